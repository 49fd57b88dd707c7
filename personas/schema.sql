-- personahub database schema: the one place where every table is defined.
-- Column meanings are documented in docs/schema.md (a test checks both stay in step).
-- Rows are only ever flagged (is_duplicate / duplicate_of), never deleted.

-- The persona hub ------------------------------------------------------------------------
CREATE SEQUENCE IF NOT EXISTS persona_seq;
CREATE TABLE IF NOT EXISTS personas (
    persona_id   VARCHAR PRIMARY KEY,
    seq          BIGINT DEFAULT nextval('persona_seq'),
    text         VARCHAR NOT NULL,
    source       VARCHAR,
    source_ref   VARCHAR,
    attributes   JSON,
    hop          INTEGER DEFAULT 0,
    created_at   TIMESTAMP DEFAULT current_timestamp,
    is_duplicate BOOLEAN DEFAULT false,
    duplicate_of VARCHAR,
    dup_stage    VARCHAR
);
CREATE TABLE IF NOT EXISTS relations (
    src        VARCHAR NOT NULL,
    dst        VARCHAR NOT NULL,
    relation   VARCHAR NOT NULL,
    hop        INTEGER,
    source     VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (src, dst, relation)
);

-- Simulation runs -------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS runs (
    run_id        VARCHAR PRIMARY KEY,
    scenario      VARCHAR,
    scenario_path VARCHAR,
    seed          BIGINT,
    llm           VARCHAR,
    config        JSON,
    status        VARCHAR,
    error         VARCHAR,
    steps_planned INTEGER,
    steps_done    INTEGER DEFAULT 0,
    started_at    TIMESTAMP,
    finished_at   TIMESTAMP
);
CREATE TABLE IF NOT EXISTS run_agents (
    run_id     VARCHAR NOT NULL,
    agent_id   INTEGER NOT NULL,
    persona_id VARCHAR NOT NULL,
    PRIMARY KEY (run_id, agent_id)
);
CREATE TABLE IF NOT EXISTS steps (
    run_id      VARCHAR NOT NULL,
    step        INTEGER NOT NULL,
    n_active    INTEGER,
    n_emissions INTEGER,
    n_messages  INTEGER,
    n_failed    INTEGER,
    started_at  TIMESTAMP,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS emissions (
    emission_id       VARCHAR PRIMARY KEY,
    run_id            VARCHAR NOT NULL,
    step              INTEGER NOT NULL,
    agent_id          INTEGER NOT NULL,
    persona_id        VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,
    content           JSON NOT NULL,
    text              VARCHAR NOT NULL,
    target_persona_id VARCHAR,
    model             VARCHAR,
    is_duplicate      BOOLEAN DEFAULT false,
    duplicate_of      VARCHAR
);
CREATE TABLE IF NOT EXISTS messages (
    message_id     VARCHAR PRIMARY KEY,
    run_id         VARCHAR NOT NULL,
    step           INTEGER NOT NULL,
    sender_id      VARCHAR NOT NULL,
    receiver_id    VARCHAR NOT NULL,
    text           VARCHAR NOT NULL,
    reply_to       VARCHAR,
    emission_id    VARCHAR
);
CREATE TABLE IF NOT EXISTS llm_calls (
    call_id    VARCHAR PRIMARY KEY,
    run_id     VARCHAR,
    step       INTEGER,
    persona_id VARCHAR,
    purpose    VARCHAR,
    model      VARCHAR,
    endpoint   INTEGER,
    attempt    INTEGER,
    status     VARCHAR,
    error      VARCHAR,
    tokens_in  INTEGER,
    tokens_out INTEGER,
    latency_ms DOUBLE,
    cached     BOOLEAN,
    started_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS llm_cache (
    key        VARCHAR PRIMARY KEY,
    model      VARCHAR NOT NULL,
    sample     INTEGER,
    request    JSON,
    response   VARCHAR,
    error      VARCHAR,
    tokens_in  INTEGER,
    tokens_out INTEGER,
    created_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS prices (
    model      VARCHAR PRIMARY KEY,
    price_in   DOUBLE NOT NULL,
    price_out  DOUBLE NOT NULL,
    updated_at TIMESTAMP DEFAULT current_timestamp
);

-- Persona-driven synthesis jobs ---------------------------------------------------------
CREATE TABLE IF NOT EXISTS synth_jobs (
    job_id      VARCHAR PRIMARY KEY,
    task        VARCHAR NOT NULL,
    prompting   VARCHAR NOT NULL,
    n           INTEGER,
    llm         VARCHAR,
    config      JSON,
    status      VARCHAR,
    error       VARCHAR,
    started_at  TIMESTAMP,
    finished_at TIMESTAMP
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
