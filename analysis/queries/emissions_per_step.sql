-- Emissions per step and kind of the latest run.
SELECT step, kind, n, n_duplicates FROM v_emissions_by_step
WHERE run_id = (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)
ORDER BY step, kind;
