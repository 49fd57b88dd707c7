-- personahub analysis views. Stored in the database file by every writer when the file lacks
-- this text's views (personahub/core/stored_views.py), so any DuckDB client sees them; laid
-- over as TEMP views on the read-only connections of `personahub sql` / `personahub report`
-- (analysis.views.install_views). Every statement is CREATE OR REPLACE, so re-installing after
-- an upgrade is safe. Statements are separated by a line holding only ';'.

-- v_emissions_by_step: how many emissions of each task each step of each run produced,
-- and how many of them were flagged as near-duplicates.
CREATE OR REPLACE {temp} VIEW v_emissions_by_step AS
SELECT run_id, step, task, count(*) AS n,
       count(*) FILTER (WHERE is_duplicate) AS n_duplicates
FROM emissions GROUP BY ALL
;
-- v_duplicate_rate: near-duplicate rate per source (run or synthesis job) and task.
-- source is 'run' (emissions) or 'job' (synth_items); source_id is the run or job id.
CREATE OR REPLACE {temp} VIEW v_duplicate_rate AS
SELECT 'run' AS source, run_id AS source_id, task, count(*) AS n,
       count(*) FILTER (WHERE is_duplicate) AS n_duplicates,
       round(count(*) FILTER (WHERE is_duplicate) / count(*), 4) AS duplicate_rate
FROM emissions GROUP BY ALL
UNION ALL
SELECT 'job', job_id, task, count(*), count(*) FILTER (WHERE is_duplicate),
       round(count(*) FILTER (WHERE is_duplicate) / count(*), 4)
FROM synth_items GROUP BY ALL
;
-- v_run_usage: model calls and tokens per run (its own calls, its expansion's and interviews') or
-- other job (a synthesis job, a standalone expansion, a judge...): run_id is llm_calls.run_id,
-- else the job's id (llm_calls.job_id).
-- calls counts attempts; failed = error + invalid attempts; sent = attempts that went out and
-- whose outcome was never recorded (a kill); unknown_usage = attempts whose tokens are unknown
-- (NULL: sent ones, and answers whose server reported an impossible figure), left out of the
-- token sums. Costs: see v_run_cost.
CREATE OR REPLACE {temp} VIEW v_run_usage AS
SELECT coalesce(run_id, job_id) AS run_id, count(*) AS calls,
       count(*) FILTER (WHERE status = 'ok') AS ok,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'invalid') AS invalid,
       coalesce(sum(tokens_in), 0) AS tokens_in,
       coalesce(sum(tokens_out), 0) AS tokens_out,
       round(avg(latency_ms), 2) AS avg_latency_ms,
       min(started_at) AS first_call, max(started_at) AS last_call,
       count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE tokens_in IS NULL OR tokens_out IS NULL) AS unknown_usage
FROM llm_calls GROUP BY ALL
;
-- v_run_cost: tokens and cost in USD per run (or other job: run_id as in v_run_usage). Prices are
-- USD per 1M tokens: the run's own --price-in/--price-out (its jobs.config) first, else the prices table row for the
-- call's served model name (llm_calls.model_name); the offline engine costs 0.
-- Attempts sent in a provider batch (llm_calls.provider_batch_id set) are priced at the batch
-- price: the run's own provider_batch_price_in/out options (its jobs.config), else half the run's
-- own price, else the prices table's provider_batch_price_in/out, else half its price_in/out (the
-- OpenAI Batch API's discount).
-- Answers from the record/replay cache (llm_calls.cached) are not billed: their tokens and what
-- they would have cost are reported apart. cost_usd is NULL when a billed call has no price.
-- unknown_usage_calls: billed attempts whose tokens are unknown (status 'sent', out at a kill,
-- or an impossible figure from the server, stored as NULL): billed, but not in the token sums,
-- so cost_usd is a lower bound when it is above 0.
CREATE OR REPLACE {temp} VIEW v_run_cost AS
WITH calls AS (
    SELECT coalesce(run_id, job_id) AS run_id, coalesce(cached, false) AS cached,
           provider_batch_id IS NOT NULL AS batch,
           coalesce(tokens_in, 0) AS tokens_in, coalesce(tokens_out, 0) AS tokens_out,
           tokens_in IS NULL OR tokens_out IS NULL AS unknown_usage, model_name
    FROM llm_calls
), options AS (
    SELECT c.*, p.price_in AS table_in, p.price_out AS table_out,
           p.provider_batch_price_in AS table_batch_in,
           p.provider_batch_price_out AS table_batch_out,
           try_cast(json_extract_string(r.config, '$.price_in') AS DOUBLE) AS run_in,
           try_cast(json_extract_string(r.config, '$.price_out') AS DOUBLE) AS run_out,
           try_cast(json_extract_string(r.config, '$.provider_batch_price_in') AS DOUBLE)
               AS run_batch_in,
           try_cast(json_extract_string(r.config, '$.provider_batch_price_out') AS DOUBLE)
               AS run_batch_out,
           CASE WHEN c.model_name = 'offline' THEN 0.0 END AS free
    FROM calls c
    LEFT JOIN jobs r ON r.job_id = c.run_id AND r.kind = 'run'
    LEFT JOIN prices p ON p.model = c.model_name
), priced AS (
    SELECT *,
           CASE WHEN batch THEN coalesce(run_batch_in, 0.5 * run_in, table_batch_in,
                                         0.5 * table_in, free)
                ELSE coalesce(run_in, table_in, free) END AS price_in,
           CASE WHEN batch THEN coalesce(run_batch_out, 0.5 * run_out, table_batch_out,
                                         0.5 * table_out, free)
                ELSE coalesce(run_out, table_out, free) END AS price_out
    FROM options
)
SELECT run_id,
       count(*) AS calls,
       count(*) FILTER (WHERE cached) AS cached_calls,
       coalesce(sum(tokens_in) FILTER (WHERE NOT cached), 0) AS tokens_in,
       coalesce(sum(tokens_out) FILTER (WHERE NOT cached), 0) AS tokens_out,
       coalesce(sum(tokens_in) FILTER (WHERE cached), 0) AS cached_tokens_in,
       coalesce(sum(tokens_out) FILTER (WHERE cached), 0) AS cached_tokens_out,
       CASE WHEN count(*) FILTER (WHERE NOT cached AND (price_in IS NULL OR price_out IS NULL)) > 0
            THEN NULL
            ELSE round(coalesce(sum((tokens_in * price_in + tokens_out * price_out) / 1e6)
                                FILTER (WHERE NOT cached), 0), 6) END AS cost_usd,
       round(sum((tokens_in * price_in + tokens_out * price_out) / 1e6) FILTER (WHERE cached), 6)
           AS cached_cost_usd,
       count(*) FILTER (WHERE batch) AS provider_batch_calls,
       round(sum((tokens_in * price_in + tokens_out * price_out) / 1e6)
             FILTER (WHERE batch AND NOT cached), 6) AS provider_batch_cost_usd,
       count(*) FILTER (WHERE unknown_usage AND NOT cached) AS unknown_usage_calls
FROM priced GROUP BY run_id
;
-- v_agent_activity: per run and persona, emissions made and messages sent/received;
-- order by emissions or messages_sent for the most active agents.
CREATE OR REPLACE {temp} VIEW v_agent_activity AS
WITH em AS (SELECT run_id, persona_id, count(*) AS emissions FROM emissions GROUP BY ALL),
     sent AS (SELECT run_id, sender_id AS persona_id, count(*) AS messages_sent
              FROM messages GROUP BY ALL),
     recv AS (SELECT run_id, receiver_id AS persona_id, count(*) AS messages_received
              FROM messages GROUP BY ALL)
SELECT ra.run_id, ra.agent_id, ra.persona_id, p.text AS persona,
       coalesce(em.emissions, 0) AS emissions,
       coalesce(sent.messages_sent, 0) AS messages_sent,
       coalesce(recv.messages_received, 0) AS messages_received
FROM run_agents ra
LEFT JOIN personas p ON p.persona_id = ra.persona_id
LEFT JOIN em ON em.run_id = ra.run_id AND em.persona_id = ra.persona_id
LEFT JOIN sent ON sent.run_id = ra.run_id AND sent.persona_id = ra.persona_id
LEFT JOIN recv ON recv.run_id = ra.run_id AND recv.persona_id = ra.persona_id
;
-- v_message_edges: the message graph against the relationship graph, per run: how many
-- messages travel along a relations edge (either direction) and the share that do.
CREATE OR REPLACE {temp} VIEW v_message_edges AS
SELECT m.run_id, count(*) AS messages,
       count(DISTINCT (m.sender_id, m.receiver_id)) AS distinct_pairs,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM relations r
           WHERE (r.src = m.sender_id AND r.dst = m.receiver_id)
              OR (r.src = m.receiver_id AND r.dst = m.sender_id))) AS along_relations,
       round(count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM relations r
           WHERE (r.src = m.sender_id AND r.dst = m.receiver_id)
              OR (r.src = m.receiver_id AND r.dst = m.sender_id))) / count(*), 4)
           AS share_along_relations
FROM messages m GROUP BY m.run_id
;
-- v_persona_degree: degree of each persona in the relationship graph (undirected, distinct
-- neighbours), for degree distributions.
CREATE OR REPLACE {temp} VIEW v_persona_degree AS
WITH edges AS (SELECT src AS a, dst AS b FROM relations UNION SELECT dst, src FROM relations)
SELECT a AS persona_id, count(DISTINCT b) AS degree FROM edges GROUP BY a
;
-- v_synth_jobs: each synthesis job with its item, duplicate and solution counts.
CREATE OR REPLACE {temp} VIEW v_synth_jobs AS
SELECT j.job_id, j.task, j.prompting, j.n, l.status, j.llm, l.started_at, l.finished_at,
       count(i.item_id) AS items,
       count(i.item_id) FILTER (WHERE i.is_duplicate) AS duplicates,
       count(i.solution) AS solved
FROM synth_jobs j LEFT JOIN jobs l USING (job_id) LEFT JOIN synth_items i USING (job_id) GROUP BY ALL
;
-- v_rejected: what the quality gate refused, by source (text_to_persona, expand, emission,
-- synthesis), run or job, task and reason, with one example message and when it happened.
CREATE OR REPLACE {temp} VIEW v_rejected AS
SELECT source, run_id, job_id, task, reason, count(*) AS n,
       min(message) AS example_message,
       min(created_at) AS first_at, max(created_at) AS last_at
FROM rejected GROUP BY ALL
;
-- v_persona_demographics: the canonical demographic keys of each persona's attributes as
-- columns (NULL where a persona has none), for carving, counting and matching to survey
-- groups; text_origin is 'template' for personas sample-population wrote without a model.
-- The keys and their values are in docs/personas.md (personas/demographics.py).
CREATE OR REPLACE {temp} VIEW v_persona_demographics AS
SELECT persona_id, source, is_duplicate,
       json_extract_string(attributes, '$.age_group') AS age_group,
       json_extract_string(attributes, '$.sex') AS sex,
       json_extract_string(attributes, '$.race_ethnicity') AS race_ethnicity,
       json_extract_string(attributes, '$.region') AS region,
       json_extract_string(attributes, '$.education') AS education,
       json_extract_string(attributes, '$.income') AS income,
       json_extract_string(attributes, '$.party') AS party,
       json_extract_string(attributes, '$.ideology') AS ideology,
       json_extract_string(attributes, '$.marital_status') AS marital_status,
       json_extract_string(attributes, '$.population') AS population,
       json_extract_string(attributes, '$.text_origin') AS text_origin
FROM personas
;
-- v_item_sources: what made generated items, one row per synthesis job (source 'job') or run
-- (source 'run'): its task or scenario, its prompting mode (NULL for runs) and model spec.
CREATE OR REPLACE {temp} VIEW v_item_sources AS
SELECT 'job' AS source, job_id AS source_id, task AS made_by, prompting, llm FROM synth_jobs
UNION ALL
SELECT 'run', run_id, scenario, NULL, llm FROM runs
;
-- v_items: every generated item in one shape, a synthesis job's (source 'job') and a run's
-- emissions (source 'run'), each with its task (the output kind, one name in both sources) and
-- its persona's text (persona NULL when the persona is not in the hub). solution and created_at
-- are NULL for emissions, step, agent_id and archetype for synthesis items.
CREATE OR REPLACE {temp} VIEW v_items AS
SELECT 'job' AS source, i.job_id AS source_id, i.item_id, i.task, i.persona_id,
       p.text AS persona, i.content, i.text, i.solution, i.is_duplicate, i.duplicate_of,
       i.created_at, CAST(NULL AS INTEGER) AS step, CAST(NULL AS INTEGER) AS agent_id,
       CAST(NULL AS INTEGER) AS archetype
FROM synth_items i LEFT JOIN personas p USING (persona_id)
UNION ALL
SELECT 'run', e.run_id, e.emission_id, e.task, e.persona_id, p.text, e.content, e.text, NULL,
       e.is_duplicate, e.duplicate_of, NULL, e.step, e.agent_id, e.archetype
FROM emissions e LEFT JOIN personas p USING (persona_id)
;
-- v_runs: each simulation run with its lifecycle (the jobs row): scenario, status, steps done
-- of planned, start and end, model spec, seed and error, for listing runs.
CREATE OR REPLACE {temp} VIEW v_runs AS
SELECT r.run_id, r.scenario, j.status, r.steps_done, r.steps_planned, j.started_at,
       j.finished_at, r.llm, j.seed, j.error
FROM runs r LEFT JOIN jobs j ON j.job_id = r.run_id AND j.kind = 'run'
;
