-- personahub database schema: the one place where every table is defined.
-- Column meanings are documented in docs/database.md (a test checks both stay in step).
-- Rows are only ever flagged (is_duplicate / duplicate_of), never deleted.

-- Jobs -----------------------------------------------------------------------------------
-- Every job of every kind (run, synthesis, expansion, text_to_persona, dedup, ...): its lifecycle
-- in one place (personahub/core/jobs_store.py owns this table's SQL); what a kind keeps besides is
-- in its detail table (runs, synth_jobs, expansions, text_jobs, dedup_jobs), keyed by the job id.
CREATE TABLE IF NOT EXISTS jobs (
    job_id      VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,
    config      JSON,
    seed        BIGINT,
    error       VARCHAR,
    started_at  TIMESTAMP,
    updated_at  TIMESTAMP,
    finished_at TIMESTAMP,
    parent_id   VARCHAR
);
-- What the file's schema is: schema_version (core/store.py's SCHEMA_VERSION; a file of another
-- version is refused, not converted), the digest of the DDL it was made with, its stored views.
CREATE TABLE IF NOT EXISTS schema_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR
);

-- The persona hub ------------------------------------------------------------------------
CREATE SEQUENCE IF NOT EXISTS persona_seq;
-- No PRIMARY KEY on persona_id: DuckDB holds a key's index in memory whatever its memory_limit
-- (about 45 bytes a persona), so an import's memory grew with the hub. upsert_personas keeps the
-- ids distinct (in the batch, then an anti-join against the table). Older files keep their key.
CREATE TABLE IF NOT EXISTS personas (
    persona_id   VARCHAR NOT NULL,
    seq          BIGINT DEFAULT nextval('persona_seq'),
    text         VARCHAR NOT NULL,
    source       VARCHAR,
    source_ref   VARCHAR,
    attributes   JSON,
    hop          INTEGER DEFAULT 0,
    created_at   TIMESTAMP DEFAULT current_timestamp,
    is_duplicate BOOLEAN DEFAULT false,
    duplicate_of VARCHAR,
    dup_stage    VARCHAR,
    -- what a draw may take (personas/hub_gate.py): passed, failed (a row written without a
    -- model whose text fails the gate), offline (the offline engine's)
    gate         VARCHAR NOT NULL
);
-- No PRIMARY KEY on (src, dst, relation), for the personas table's reason: DuckDB holds a key's
-- index in memory whatever its memory_limit (72 MiB at 2M relations, 177 MiB at 6M), loaded by
-- any insert. add_relations keeps each (src, dst, relation) once (in the batch, then an anti-join
-- against the table). Older files keep their key.
CREATE TABLE IF NOT EXISTS relations (
    src        VARCHAR NOT NULL,
    dst        VARCHAR NOT NULL,
    relation   VARCHAR NOT NULL,
    hop        INTEGER,
    source     VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
);

-- What an imported Persona Hub synthesis row held besides its persona ("synthesized text",
-- "description" and the whole raw row), so `export --source-file` can reproduce the file.
CREATE TABLE IF NOT EXISTS persona_texts (
    source           VARCHAR NOT NULL,
    row_no           BIGINT NOT NULL,
    persona_id       VARCHAR NOT NULL,
    synthesized_text VARCHAR,
    description      VARCHAR,
    raw              VARCHAR NOT NULL,
    created_at       TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (source, row_no)
);

-- Text-to-persona progress: one row per (corpus, text, relation) answered, written in the same
-- transaction as the personas it produced, so an interrupted job resumes without twins.
CREATE TABLE IF NOT EXISTS text_done (
    corpus      VARCHAR NOT NULL,
    text_id     VARCHAR NOT NULL,
    relation    VARCHAR NOT NULL,
    persona_ids JSON,
    done_at     TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (corpus, text_id, relation)
);
-- A text-to-persona job per corpus (its lifecycle and stored configuration in jobs): a re-run over
-- the corpus, or --resume CORPUS, goes on with it.
CREATE TABLE IF NOT EXISTS text_jobs (
    job_id VARCHAR PRIMARY KEY,
    corpus VARCHAR NOT NULL UNIQUE
);

-- Dedup jobs (``personas dedup``; lifecycle and stored configuration in jobs): the stages done.
CREATE TABLE IF NOT EXISTS dedup_jobs (
    job_id      VARCHAR PRIMARY KEY,
    stages      JSON
);
-- Dedup stage-2 vectors, one per persona and embedder, written with the batch's model calls and
-- cache entries: a resumed or repeated dedup embeds only what is missing.
CREATE TABLE IF NOT EXISTS persona_embeddings (
    persona_id VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    dim        INTEGER NOT NULL,
    vector     FLOAT[] NOT NULL,
    job_id     VARCHAR,
    created_at TIMESTAMP,
    PRIMARY KEY (persona_id, model)
);
-- Which texts dedup stage 2 judged with which embedder: texts outside the scripts the embedder was
-- trained on (e.g. CJK or Thai for all-MiniLM-L6-v2) are left to MinHash.
CREATE TABLE IF NOT EXISTS dedup_judged (
    persona_id VARCHAR NOT NULL,
    model      VARCHAR NOT NULL,
    script     VARCHAR,
    judged     BOOLEAN NOT NULL,
    job_id     VARCHAR,
    judged_at  TIMESTAMP,
    PRIMARY KEY (persona_id, model)
);

-- Personas an expansion did not add because they are someone already known: same person by
-- embedding (cosine >= threshold) or by the model's answer to the link question.
CREATE TABLE IF NOT EXISTS persona_merges (
    expansion_id VARCHAR NOT NULL,
    position     INTEGER NOT NULL,
    persona_id   VARCHAR NOT NULL,
    text         VARCHAR NOT NULL,
    merged_into  VARCHAR NOT NULL,
    method       VARCHAR NOT NULL,
    score        DOUBLE,
    hop          INTEGER,
    PRIMARY KEY (expansion_id, position)
);

-- Persona-to-persona expansions and their persisted BFS frontier (resumable mid-hop).
-- (lifecycle, stored configuration and the run it belongs to: jobs, parent_id)
CREATE TABLE IF NOT EXISTS expansions (
    expansion_id VARCHAR PRIMARY KEY,
    params_key   VARCHAR NOT NULL,
    hops_done    INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS expansion_frontier (
    expansion_id VARCHAR NOT NULL,
    hop          INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    persona_id   VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,
    targets      JSON,
    created      JSON,
    merged       INTEGER,
    attempts     INTEGER,
    linked       INTEGER,
    PRIMARY KEY (expansion_id, hop, persona_id)
);

-- Simulation runs -------------------------------------------------------------------------
-- (lifecycle, seed and stored configuration: jobs)
CREATE TABLE IF NOT EXISTS runs (
    run_id        VARCHAR PRIMARY KEY,
    scenario      VARCHAR,
    scenario_path VARCHAR,
    llm           VARCHAR,
    steps_planned INTEGER,
    steps_done    INTEGER DEFAULT 0
);
-- run_agents and run_edges are written once per run, in one transaction, from the model and its
-- graph (unique by construction); no key index: at 100,000 agents and 200,000 edges maintaining
-- one tripled the cost of recording the society
CREATE TABLE IF NOT EXISTS run_agents (
    run_id     VARCHAR NOT NULL,
    agent_id   INTEGER NOT NULL,
    persona_id VARCHAR NOT NULL
);
-- A run's archetypes (scenario.archetypes, personas/archetypes.py), fixed at setup: each with its
-- size, representative persona and members' attribute shares; and each agent's archetype
CREATE TABLE IF NOT EXISTS run_archetypes (
    run_id           VARCHAR NOT NULL,
    archetype        INTEGER NOT NULL,
    size             INTEGER NOT NULL,
    representative   VARCHAR NOT NULL,
    attribute_shares JSON,
    method           VARCHAR,
    PRIMARY KEY (run_id, archetype)
);
CREATE TABLE IF NOT EXISTS run_agent_archetypes (
    run_id     VARCHAR NOT NULL,
    persona_id VARCHAR NOT NULL,
    archetype  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    run_id      VARCHAR NOT NULL,
    step        INTEGER NOT NULL,
    n_active    INTEGER,
    n_emissions INTEGER,
    n_messages  INTEGER,
    n_failed    INTEGER,
    n_answers   INTEGER,
    n_archetype_calls INTEGER DEFAULT 0,  -- calls made once per archetype (scenario.archetypes)
    n_drawn     INTEGER DEFAULT 0,  -- answers and emissions drawn from those calls
    started_at  TIMESTAMP,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, step)
);
-- emissions, messages and agent_states: no key index (docs/database.md), as survey_answers: a
-- column step writes a row per active agent, whose index DuckDB would hold outside its limit; the
-- step's `steps` row, written in the same transaction, refuses a step committed twice
CREATE TABLE IF NOT EXISTS emissions (
    emission_id       VARCHAR NOT NULL,
    run_id            VARCHAR NOT NULL,
    step              INTEGER NOT NULL,
    agent_id          INTEGER NOT NULL,
    persona_id        VARCHAR NOT NULL,
    task              VARCHAR NOT NULL,  -- the output kind (personahub/tasks/), as synth_items.task
    content           JSON NOT NULL,
    text              VARCHAR NOT NULL,
    target_persona_id VARCHAR,
    model             VARCHAR,
    is_duplicate      BOOLEAN DEFAULT false,
    duplicate_of      VARCHAR,
    archetype         INTEGER  -- set when drawn from its archetype's pool (scenario.archetypes)
);
CREATE TABLE IF NOT EXISTS messages (
    message_id     VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,
    step           INTEGER NOT NULL,
    sender_id      VARCHAR NOT NULL,
    receiver_id    VARCHAR NOT NULL,
    text           VARCHAR NOT NULL,
    reply_to       VARCHAR,
    emission_id    VARCHAR,
    thread_id      VARCHAR
);
CREATE TABLE IF NOT EXISTS run_edges (
    run_id   VARCHAR NOT NULL,
    src      VARCHAR NOT NULL,
    dst      VARCHAR NOT NULL,
    relation VARCHAR
);
CREATE TABLE IF NOT EXISTS events (
    run_id       VARCHAR NOT NULL,
    step         INTEGER NOT NULL,
    event_index  INTEGER NOT NULL,
    text         VARCHAR NOT NULL,
    audience     VARCHAR NOT NULL,
    n_recipients INTEGER,
    recipients   JSON,
    source       VARCHAR,  -- who put the event into the run: the scenario, or a person steering it (view)
    PRIMARY KEY (run_id, event_index)
);
CREATE TABLE IF NOT EXISTS interventions (
    run_id             VARCHAR NOT NULL,
    step               INTEGER NOT NULL,
    intervention_index INTEGER NOT NULL,
    action             VARCHAR NOT NULL,
    persona_id         VARCHAR NOT NULL,
    agent_id           INTEGER,
    other_persona_id   VARCHAR,
    text               VARCHAR,
    relation           VARCHAR,
    applied            BOOLEAN,
    -- ``scenario``, or who steered the run (``view``: an event typed into the live view, action
    -- ``event``, persona ``*`` for everyone)
    source             VARCHAR,
    PRIMARY KEY (run_id, intervention_index)
);
CREATE TABLE IF NOT EXISTS survey_answers (
    run_id        VARCHAR NOT NULL,
    step          INTEGER NOT NULL,
    survey_id     VARCHAR NOT NULL,
    question      VARCHAR NOT NULL,
    persona_id    VARCHAR NOT NULL,
    agent_id      INTEGER NOT NULL,
    answer_kind   VARCHAR NOT NULL,
    answer_choice VARCHAR,
    answer_scale  INTEGER,
    answer_text   VARCHAR,
    content       JSON
    -- no key index (docs/database.md): a row per agent a step; the step's `steps` row, written in
    -- the same transaction, refuses a step committed twice
);
-- experiments (sim/experiment.py): each arm x replicate of an experiment is one run; a row is
-- written when its run finished, so running the experiment again skips it
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id VARCHAR NOT NULL,
    arm           VARCHAR NOT NULL,
    replicate     INTEGER NOT NULL,
    seed          BIGINT NOT NULL,
    run_id        VARCHAR NOT NULL,
    is_control    BOOLEAN NOT NULL,
    settings      VARCHAR NOT NULL,
    PRIMARY KEY (experiment_id, arm, replicate)
);
-- experiment_attempts (sim/experiment_store.py): the run each arm x replicate started (arm '*' for
-- a within-world replicate's one run), written with the run's jobs row: running the experiment
-- again goes on with a run that did not finish (a kill, Ctrl-C, a failure), not leaving it behind
CREATE TABLE IF NOT EXISTS experiment_attempts (
    experiment_id VARCHAR NOT NULL,
    arm           VARCHAR NOT NULL,
    replicate     INTEGER NOT NULL,
    run_id        VARCHAR NOT NULL,
    settings      VARCHAR NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (experiment_id, arm, replicate)
);
-- experiment_agents (sim/experiment_store.py): a within-world experiment's randomisation, each
-- agent of a replicate's one run and its arm (written with the run's ``experiments`` rows)
CREATE TABLE IF NOT EXISTS experiment_agents (
    experiment_id VARCHAR NOT NULL,
    replicate     INTEGER NOT NULL,
    run_id        VARCHAR NOT NULL,
    persona_id    VARCHAR NOT NULL,
    agent_id      INTEGER NOT NULL,
    arm           VARCHAR NOT NULL,
    PRIMARY KEY (experiment_id, replicate, persona_id)
);
CREATE TABLE IF NOT EXISTS agent_states (
    run_id   VARCHAR NOT NULL,
    agent_id INTEGER NOT NULL,
    step     INTEGER NOT NULL,
    state    JSON NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    run_id          VARCHAR NOT NULL,
    step            INTEGER NOT NULL,
    agent_id        INTEGER NOT NULL,
    persona_id      VARCHAR NOT NULL,
    action          VARCHAR,
    addressee_id    VARCHAR,
    addressee_label VARCHAR,
    fallback        VARCHAR,
    reason          VARCHAR,
    error           VARCHAR,
    PRIMARY KEY (run_id, step, agent_id)
);
-- Interviews (pipelines/interview.py): questions put to a run's agents afterwards, answered from an
-- agent's stored state at a step; they never change the run's own tables
CREATE TABLE IF NOT EXISTS interviews (
    interview_id VARCHAR PRIMARY KEY,
    batch_id     VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    agent_id     INTEGER NOT NULL,
    persona_id   VARCHAR NOT NULL,
    step         INTEGER NOT NULL,
    question     VARCHAR NOT NULL,
    answer       VARCHAR,
    status       VARCHAR NOT NULL,
    error        VARCHAR,
    content      JSON,
    model        VARCHAR,
    created_at   TIMESTAMP
);
CREATE TABLE IF NOT EXISTS llm_calls (
    call_id    VARCHAR PRIMARY KEY,
    run_id     VARCHAR,
    step       INTEGER,
    persona_id VARCHAR,
    purpose    VARCHAR,
    llm        VARCHAR,  -- the engine label (model_name: the served model's name)
    endpoint   INTEGER,
    attempt    INTEGER,
    status     VARCHAR,
    error      VARCHAR,
    tokens_in  BIGINT,
    tokens_out BIGINT,
    latency_ms DOUBLE,
    cached     BOOLEAN,
    started_at TIMESTAMP,
    structured_mode VARCHAR,
    max_tokens INTEGER,
    finish_reason VARCHAR,
    repaired   BOOLEAN,
    queue_ms   DOUBLE,
    -- the job kernel (personahub/core/kernel.py): which job a call belongs to
    job_kind   VARCHAR,
    job_id     VARCHAR,
    model_name VARCHAR,  -- the served model's name
    cached_prompt_tokens BIGINT,  -- prompt tokens the server's prefix cache reused
    -- attempts sent in a provider batch: its id (file:NAME for an imported results file) and the
    -- request's custom_id there; NULL for online attempts
    provider_batch_id VARCHAR,
    custom_id  VARCHAR
);
-- token counts are BIGINT (a figure no real call has is stored as NULL: core.contracts.token_count)
CREATE TABLE IF NOT EXISTS llm_cache (
    key        VARCHAR PRIMARY KEY,
    model      VARCHAR NOT NULL,
    sample     INTEGER,
    request    JSON,
    response   VARCHAR,
    error      VARCHAR,
    tokens_in  BIGINT,
    tokens_out BIGINT,
    created_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS prices (
    model      VARCHAR PRIMARY KEY,
    price_in   DOUBLE NOT NULL,
    price_out  DOUBLE NOT NULL,
    updated_at TIMESTAMP DEFAULT current_timestamp,
    -- provider batch prices: NULL means half the online price (the OpenAI Batch API's discount)
    provider_batch_price_in  DOUBLE,
    provider_batch_price_out DOUBLE
);

-- A job's provider batches (personahub/core/provider_batch_records.py): what a resume polls
-- instead of submitting again. One row per submission, keyed by the job's own key for it.
CREATE TABLE IF NOT EXISTS provider_batches (
    batch_key         VARCHAR PRIMARY KEY,
    job_kind          VARCHAR,
    job_id            VARCHAR,
    endpoint          INTEGER,
    model             VARCHAR,
    structured_mode   VARCHAR,
    batch_id          VARCHAR,
    input_file_id     VARCHAR,
    output_file_id    VARCHAR,
    error_file_id     VARCHAR,
    status            VARCHAR,
    completion_window VARCHAR,
    requests          INTEGER,
    completed         INTEGER,
    failed            INTEGER,
    custom_ids        JSON,
    errors            JSON,
    created_at        TIMESTAMP,
    finished_at       TIMESTAMP,
    updated_at        TIMESTAMP
);

-- Persona-driven synthesis jobs ---------------------------------------------------------
-- (lifecycle and stored configuration: jobs)
CREATE TABLE IF NOT EXISTS synth_jobs (
    job_id      VARCHAR PRIMARY KEY,
    task        VARCHAR NOT NULL,
    prompting   VARCHAR NOT NULL,
    n           INTEGER,
    llm         VARCHAR
);
-- The personas a job drew (its seeded sample), in order: what a resume asks, whatever the hub
-- gained since. Written with the job's synth_jobs row.
CREATE TABLE IF NOT EXISTS synth_job_personas (
    job_id      VARCHAR NOT NULL,
    position    INTEGER NOT NULL,
    persona_id  VARCHAR NOT NULL,
    PRIMARY KEY (job_id, position)
);
CREATE TABLE IF NOT EXISTS synth_items (
    item_id      VARCHAR PRIMARY KEY,
    job_id       VARCHAR NOT NULL,
    persona_id   VARCHAR NOT NULL,
    task         VARCHAR NOT NULL,
    prompting    VARCHAR NOT NULL,
    model        VARCHAR,
    content      JSON NOT NULL,
    text         VARCHAR NOT NULL,
    solution     JSON,
    is_duplicate BOOLEAN DEFAULT false,
    duplicate_of VARCHAR,
    created_at   TIMESTAMP DEFAULT current_timestamp
);

-- The quality gate (personas/quality.py, personahub/tasks/validators.py) ------------------------------
-- Generated personas and items that failed a rule: kept with the reason, never in personas,
-- emissions or synth_items. Written in the same transaction as the batch or step they came from.
CREATE TABLE IF NOT EXISTS rejected (
    rejected_id VARCHAR PRIMARY KEY,
    source      VARCHAR NOT NULL,
    run_id      VARCHAR,
    job_id      VARCHAR,
    step        INTEGER,
    persona_id  VARCHAR,
    task        VARCHAR,
    reason      VARCHAR NOT NULL,
    message     VARCHAR,
    payload     JSON,
    created_at  TIMESTAMP DEFAULT current_timestamp
);

-- The judge (personahub judge, pipelines/judge.py) ---------------------------------------------------
-- One row per item a judge rated against its kind's criteria (personahub/tasks/: Task.judge_criteria).
-- Written batch by batch with the calls' llm_calls rows; a judge's id is derived from its
-- settings, so re-running the same judge skips the items it has rated.
CREATE TABLE IF NOT EXISTS judgments (
    judge_id    VARCHAR NOT NULL,
    target_kind VARCHAR NOT NULL,
    target_id   VARCHAR NOT NULL,
    item_id     VARCHAR NOT NULL,
    task        VARCHAR NOT NULL,
    criteria    JSON NOT NULL,
    valid       BOOLEAN NOT NULL,
    reason      VARCHAR,
    model       VARCHAR,
    config      JSON,
    created_at  TIMESTAMP,
    PRIMARY KEY (judge_id, item_id)
);

-- Evaluation of a synthesis job's items or an outside item set (pipelines/evaluate*.py) ---------------
-- An outside item file (evaluate --items), once per content: its id (items-...) is a hash of the
-- file's SHA-256 and the columns read, so an edited file is a new item set.
CREATE TABLE IF NOT EXISTS eval_item_sets (
    source_id       VARCHAR PRIMARY KEY,
    path            VARCHAR NOT NULL,
    sha256          VARCHAR NOT NULL,
    question_column VARCHAR NOT NULL,
    answer_column   VARCHAR,
    n_rows          INTEGER NOT NULL,
    left_out        JSON,
    created_at      TIMESTAMP
);
-- Its items: one per file row with a question, with the row's reference answer if it has one.
CREATE TABLE IF NOT EXISTS eval_items (
    source_id VARCHAR NOT NULL,
    item_id   VARCHAR NOT NULL,
    file_row  INTEGER NOT NULL,
    text      VARCHAR NOT NULL,
    reference VARCHAR,
    PRIMARY KEY (source_id, item_id)
);
-- A split is stored once under its id and read back on every later call.
CREATE TABLE IF NOT EXISTS eval_splits (
    eval_id  VARCHAR NOT NULL,
    job_id   VARCHAR NOT NULL,
    item_id  VARCHAR NOT NULL,
    split    VARCHAR NOT NULL,
    group_id VARCHAR NOT NULL,
    seed     INTEGER NOT NULL,
    PRIMARY KEY (eval_id, item_id)
);

-- Items that overlap a benchmark (--against): in neither split.
CREATE TABLE IF NOT EXISTS eval_contamination (
    eval_id       VARCHAR NOT NULL,
    item_id       VARCHAR NOT NULL,
    benchmark     VARCHAR NOT NULL,
    benchmark_row INTEGER NOT NULL,
    kind          VARCHAR NOT NULL,
    detail        VARCHAR,
    PRIMARY KEY (eval_id, item_id, benchmark)
);

-- One row per (test item, solver or scored model, sample), written with the calls' llm_calls rows.
CREATE TABLE IF NOT EXISTS eval_answers (
    eval_id    VARCHAR NOT NULL,
    item_id    VARCHAR NOT NULL,
    role       VARCHAR NOT NULL,
    spec       VARCHAR NOT NULL,
    mode       VARCHAR NOT NULL,
    sample     INTEGER NOT NULL,
    answer     VARCHAR,
    reasoning  VARCHAR,
    model      VARCHAR,
    created_at TIMESTAMP,
    PRIMARY KEY (eval_id, item_id, role, spec, sample)
);

-- One row per test item once its solvers answered: verified when enough of them agree.
CREATE TABLE IF NOT EXISTS eval_verified (
    eval_id   VARCHAR NOT NULL,
    item_id   VARCHAR NOT NULL,
    verified  BOOLEAN NOT NULL,
    reference VARCHAR,
    agreed    JSON NOT NULL,
    answered  INTEGER NOT NULL,
    agree     INTEGER NOT NULL,
    PRIMARY KEY (eval_id, item_id)
);

-- The equivalence judge's verdicts (--equivalence-judge) on answer pairs math-verify cannot
-- decide, one row per (pair, judge): answer_a <= answer_b; written with the calls' llm_calls rows.
CREATE TABLE IF NOT EXISTS eval_equivalence (
    eval_id    VARCHAR NOT NULL,
    answer_a   VARCHAR NOT NULL,
    answer_b   VARCHAR NOT NULL,
    judge      VARCHAR NOT NULL,
    equal      BOOLEAN NOT NULL,
    model      VARCHAR,
    created_at TIMESTAMP,
    PRIMARY KEY (eval_id, answer_a, answer_b, judge)
);

-- Calibration against human surveys (personahub calibrate, pipelines/calibrate.py) ---------
-- (lifecycle and stored configuration: jobs). What the job asked about and whom is stored with
-- its row, so scores, reports and a resume never read the survey file again.
CREATE TABLE IF NOT EXISTS calibration_jobs (
    job_id        VARCHAR PRIMARY KEY,
    survey        VARCHAR NOT NULL,
    survey_sha1   VARCHAR NOT NULL,
    population    VARCHAR NOT NULL,
    n             INTEGER NOT NULL,
    no_persona_n  INTEGER NOT NULL,
    steering      JSON NOT NULL,
    offer_refusal BOOLEAN NOT NULL,
    llm           VARCHAR
);
CREATE TABLE IF NOT EXISTS calibration_questions (
    job_id      VARCHAR NOT NULL,
    question_id VARCHAR NOT NULL,
    position    INTEGER NOT NULL,
    text        VARCHAR NOT NULL,
    options     JSON NOT NULL,
    ordinal     JSON NOT NULL,
    PRIMARY KEY (job_id, question_id)
);
CREATE TABLE IF NOT EXISTS calibration_human (
    job_id      VARCHAR NOT NULL,
    question_id VARCHAR NOT NULL,
    attribute   VARCHAR NOT NULL,
    grp         VARCHAR NOT NULL,
    labels      JSON NOT NULL,
    counts      JSON NOT NULL,
    PRIMARY KEY (job_id, question_id, attribute, grp)
);
CREATE TABLE IF NOT EXISTS calibration_panels (
    job_id     VARCHAR NOT NULL,
    attribute  VARCHAR NOT NULL,
    grp        VARCHAR NOT NULL,
    position   INTEGER NOT NULL,
    persona_id VARCHAR NOT NULL,
    PRIMARY KEY (job_id, attribute, grp, position)
);
CREATE TABLE IF NOT EXISTS calibration_answers (
    job_id      VARCHAR NOT NULL,
    question_id VARCHAR NOT NULL,
    steering    VARCHAR NOT NULL,
    respondent  VARCHAR NOT NULL,
    persona_id  VARCHAR,
    answer      VARCHAR NOT NULL,
    refused     BOOLEAN NOT NULL,
    reason      VARCHAR,
    model       VARCHAR,
    PRIMARY KEY (job_id, question_id, steering, respondent)
);
CREATE TABLE IF NOT EXISTS calibration_scores (
    job_id             VARCHAR NOT NULL,
    question_id        VARCHAR NOT NULL,
    attribute          VARCHAR NOT NULL,
    grp                VARCHAR NOT NULL,
    source             VARCHAR NOT NULL,
    steering           VARCHAR NOT NULL,
    metric             VARCHAR NOT NULL,
    representativeness DOUBLE,
    dispersion         DOUBLE,
    modal_agreement    DOUBLE,
    human_n            DOUBLE,
    sim_n              DOUBLE,
    sim_failed         INTEGER,
    human_refusal      DOUBLE,
    sim_refusal        DOUBLE,
    counts             JSON,
    sd_ratio           DOUBLE, -- simulated SD / human SD on ordinal questions
    temperature        DOUBLE  -- a --dispersion temper row: the T its question was tempered with
);
CREATE TABLE IF NOT EXISTS calibration_summary (
    job_id             VARCHAR NOT NULL,
    source             VARCHAR NOT NULL,
    steering           VARCHAR NOT NULL,
    level              VARCHAR NOT NULL,
    attribute          VARCHAR NOT NULL,
    grp                VARCHAR NOT NULL,
    representativeness DOUBLE,
    dispersion         DOUBLE,
    modal_agreement    DOUBLE,
    scored             INTEGER,
    sd_ratio           DOUBLE  -- simulated SD / human SD on ordinal questions
);
-- calibrate --fit: each question's fold (seeded, written with the job), and the survey profile
-- the fit chose on the training folds (written when the job is scored; run --survey-profile)
CREATE TABLE IF NOT EXISTS calibration_folds (
    job_id      VARCHAR NOT NULL,
    question_id VARCHAR NOT NULL,
    fold        INTEGER NOT NULL, -- 0 is held out: the fit never sees it
    PRIMARY KEY (job_id, question_id)
);
CREATE TABLE IF NOT EXISTS calibration_profiles (
    job_id      VARCHAR PRIMARY KEY,
    method      VARCHAR NOT NULL, -- the elicitation method's spec (distribution, few-shot:2, ...)
    steering    VARCHAR NOT NULL, -- what its prompts show of a persona
    temperature DOUBLE NOT NULL,  -- each persona's distribution is scaled p^(1/T)
    params      JSON NOT NULL,    -- the method's tunable parameters
    examples    JSON NOT NULL,    -- the shown questions with each group's human answers
    model       VARCHAR NOT NULL, -- the served model it was fitted on
    llm         VARCHAR,          -- the model client's label
    candidates  JSON NOT NULL     -- every configuration tried, with its training score
);

-- Populations written by a model (personas sample-population --llm, pipelines/population_write.py)
-- (lifecycle and stored configuration: jobs); the people are personas rows.
CREATE TABLE IF NOT EXISTS population_jobs (
    job_id        VARCHAR PRIMARY KEY,
    population_id VARCHAR NOT NULL,
    drawn_id      VARCHAR NOT NULL,
    n             INTEGER NOT NULL,
    llm           VARCHAR
);
