-- Cost in USD per run or synthesis job (prices: --price-in/--price-out or the prices table),
-- with billed and cached token counts, newest runs first.
SELECT c.run_id, r.scenario, c.calls, c.cached_calls, c.tokens_in, c.tokens_out, c.cost_usd,
       c.cached_cost_usd
FROM v_run_cost c LEFT JOIN runs r USING (run_id) LEFT JOIN jobs j ON j.job_id = c.run_id
ORDER BY j.started_at DESC NULLS LAST, c.run_id;
