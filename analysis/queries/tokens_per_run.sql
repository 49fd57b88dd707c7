-- Model calls and tokens per run or synthesis job, newest first.
SELECT run_id, calls, ok, errors, invalid, tokens_in, tokens_out, avg_latency_ms
FROM v_run_usage ORDER BY last_call DESC;
