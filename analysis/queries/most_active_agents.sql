-- The 20 most active agents of the latest run (emissions, then messages sent).
SELECT agent_id, emissions, messages_sent, messages_received, left(persona, 80) AS persona
FROM v_agent_activity
WHERE run_id = (SELECT job_id FROM jobs WHERE kind = 'run' ORDER BY started_at DESC LIMIT 1)
ORDER BY emissions DESC, messages_sent DESC LIMIT 20;
