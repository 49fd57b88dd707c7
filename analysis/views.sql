-- personahub analysis views. Installed by analysis.views.install_views(con): as TEMP views on
-- the read-only connections of `personahub sql` / `personahub report`, or persistently on a
-- writable connection for other tools. Every statement is CREATE OR REPLACE, so re-installing
-- after an upgrade is safe. Statements are separated by a line holding only ';'.

-- v_emissions_by_step: how many emissions of each kind each step of each run produced,
-- and how many of them were flagged as near-duplicates.
CREATE OR REPLACE {temp} VIEW v_emissions_by_step AS
SELECT run_id, step, kind, count(*) AS n,
       count(*) FILTER (WHERE is_duplicate) AS n_duplicates
FROM emissions GROUP BY ALL
;
-- v_duplicate_rate: near-duplicate rate per source (run or synthesis job) and kind/task.
-- source is 'run' (emissions) or 'job' (synth_items); source_id is the run or job id.
CREATE OR REPLACE {temp} VIEW v_duplicate_rate AS
SELECT 'run' AS source, run_id AS source_id, kind, count(*) AS n,
       count(*) FILTER (WHERE is_duplicate) AS n_duplicates,
       round(count(*) FILTER (WHERE is_duplicate) / count(*), 4) AS duplicate_rate
FROM emissions GROUP BY ALL
UNION ALL
SELECT 'job', job_id, task, count(*), count(*) FILTER (WHERE is_duplicate),
       round(count(*) FILTER (WHERE is_duplicate) / count(*), 4)
FROM synth_items GROUP BY ALL
;
-- v_run_usage: model calls and tokens per run or synthesis job (llm_calls.run_id holds both).
-- calls counts attempts; failed = error + invalid attempts. Costs: see v_run_cost.
CREATE OR REPLACE {temp} VIEW v_run_usage AS
SELECT run_id, count(*) AS calls,
       count(*) FILTER (WHERE status = 'ok') AS ok,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'invalid') AS invalid,
       coalesce(sum(tokens_in), 0) AS tokens_in,
       coalesce(sum(tokens_out), 0) AS tokens_out,
       round(avg(latency_ms), 2) AS avg_latency_ms,
       min(started_at) AS first_call, max(started_at) AS last_call
FROM llm_calls GROUP BY run_id
;
-- v_run_cost: tokens and cost in USD per run (or synthesis job). Prices are USD per 1M tokens:
-- the run's own --price-in/--price-out (its jobs.config) first, else the prices table row for the
-- call's model name (llm_calls.model without '@URL' or 'openai:'); the offline engine costs 0.
-- Answers from the record/replay cache (llm_calls.cached) are not billed: their tokens and what
-- they would have cost are reported apart. cost_usd is NULL when a billed call has no price.
CREATE OR REPLACE {temp} VIEW v_run_cost AS
WITH calls AS (
    SELECT run_id, coalesce(cached, false) AS cached,
           coalesce(tokens_in, 0) AS tokens_in, coalesce(tokens_out, 0) AS tokens_out,
           regexp_replace(regexp_replace(coalesce(model, ''), '@.*$', ''), '^openai:', '')
               AS model_name
    FROM llm_calls
), priced AS (
    SELECT c.*,
           coalesce(try_cast(json_extract_string(r.config, '$.options.price_in') AS DOUBLE),
                    p.price_in, CASE WHEN c.model_name = 'offline' THEN 0.0 END) AS price_in,
           coalesce(try_cast(json_extract_string(r.config, '$.options.price_out') AS DOUBLE),
                    p.price_out, CASE WHEN c.model_name = 'offline' THEN 0.0 END) AS price_out
    FROM calls c
    LEFT JOIN jobs r ON r.job_id = c.run_id AND r.kind = 'run'
    LEFT JOIN prices p ON p.model = c.model_name
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
           AS cached_cost_usd
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
-- synthesis), run or job, kind and reason, with one example message and when it happened.
CREATE OR REPLACE {temp} VIEW v_rejected AS
SELECT source, run_id, job_id, kind, reason, count(*) AS n,
       min(message) AS example_message,
       min(created_at) AS first_at, max(created_at) AS last_at
FROM rejected GROUP BY ALL
;
