-- Synthesis jobs with items, duplicates and solutions.
SELECT job_id, task, prompting, n, status, items, duplicates, solved FROM v_synth_jobs
ORDER BY started_at DESC;
