-- Emissions per step and task of the latest run.
SELECT step, task, n, n_duplicates FROM v_emissions_by_step
WHERE run_id = (SELECT job_id FROM jobs WHERE kind = 'run' ORDER BY started_at DESC LIMIT 1)
ORDER BY step, task;
