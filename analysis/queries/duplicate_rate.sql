-- Near-duplicate rate per run/job and task, worst first.
SELECT source, source_id, task, n, n_duplicates, duplicate_rate
FROM v_duplicate_rate ORDER BY duplicate_rate DESC, n DESC;
