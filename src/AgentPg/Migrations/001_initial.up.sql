-- AgentPg schema, version 1.
--
-- Every object is created unqualified in the first schema of the search_path. AgentPgMigrator runs this file
-- with `SET LOCAL search_path TO "<schema>"`; by hand (see docs/migrations.md):
--
--   psql -v ON_ERROR_STOP=1 -c 'CREATE SCHEMA IF NOT EXISTS my_schema'
--   PGOPTIONS='-c search_path=my_schema' psql -v ON_ERROR_STOP=1 --single-transaction -f 001_initial.up.sql
--
-- Functions and trigger functions are created with `SET search_path FROM CURRENT`, so they always resolve
-- their own schema's tables whatever the caller's search_path is, and current_schema() inside them names that
-- schema. NOTIFY channels are prefixed with the schema name unless it is `public` (agentpg_channel), so two
-- schemas in one database never wake each other.
--
-- Derived from the schema of AgentPG for Go ("schema v2.1"), adapted as follows (docs/architecture.md explains the design):
--   * fencing: runs and tool executions carry claim_epoch, bumped on every claim and release; workers write
--     only through agentpg_fence_run / agentpg_fence_tool_execution, which raise SQLSTATE AP001 when the work
--     was taken away;
--   * rescue is driven by instance liveness (agentpg_rescue), shutdown releases work instead of failing it;
--   * previous_state and finalized_at are maintained by a trigger on every transition;
--   * JSON columns hold objects ('{}' for nothing, never JSON null), a message's content an array — enforced by CHECK
--     constraints;
--   * runs carry an idempotency key (unique per session) and a FIFO position (seq) so one session processes
--     one root run at a time; messages carry seq so a conversation has a total order;
--   * content blocks are stored losslessly, in the message row (each block exactly as Claude sent it);
--   * NOTIFY is sent only where another instance must act: run created or re-queued, run finalized, tool
--     execution created. Tool completion continues the run inside the completing transaction instead of
--     sending agentpg_tools_complete;
--   * fewer indexes on agentpg_runs than the reference, none naming a column its claim or completion changes (those
--     updates are HOT); the active runs by state, session and mode are in agentpg_run_queue, kept in step by triggers.

CREATE TABLE agentpg_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------------------
-- Enum types (reference names and values; content types extended for lossless storage).
-- ---------------------------------------------------------------------------------------------------------

CREATE TYPE agentpg_run_mode AS ENUM ('batch', 'streaming');

CREATE TYPE agentpg_run_state AS ENUM (
    'pending', 'batch_submitting', 'batch_pending', 'batch_processing', 'streaming',
    'pending_tools', 'awaiting_input', 'completed', 'cancelled', 'failed');

CREATE TYPE agentpg_batch_status AS ENUM ('in_progress', 'canceling', 'ended');

-- awaiting_approval: the agent lists the tool in tools_requiring_approval; nothing claims it until a person decides
-- (agentpg_decide_tool_approval), and its run waits in pending_tools without a holder.
CREATE TYPE agentpg_tool_execution_state AS ENUM ('pending', 'running', 'completed', 'failed', 'skipped', 'awaiting_approval');

CREATE TYPE agentpg_message_role AS ENUM ('user', 'assistant', 'system');

-- ---------------------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------------------

-- NOTIFY channel name for this schema: 'agentpg_run_created' in public, 'my_schema.agentpg_run_created' elsewhere.
CREATE FUNCTION agentpg_channel(p_name TEXT) RETURNS TEXT
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT CASE WHEN current_schema() = 'public' THEN p_name ELSE current_schema() || '.' || p_name END
$$;

-- Sends a notification on this schema's channel, unless the transaction said it sends that one itself after the
-- commit (setting agentpg.defer_notify to a comma-separated list of channel names). A notifying transaction holds a
-- database-wide lock through its commit's WAL flush, so notifying commits run one at a time; AgentPg's own steps
-- therefore commit their data without NOTIFY and send it right after in a tiny asynchronously committed transaction.
-- Transactions of callers (RunFastAsync(transaction, ...)) keep the notification: it is delivered at their commit.
-- The triggers' WHEN conditions spell this expression out instead of calling the function: the planner inlines a SQL
-- function by parsing its body, and a trigger's condition is prepared again at every execution of the statement that
-- fires it, so a call there costs a parse per statement.
CREATE FUNCTION agentpg_notify_deferred(p_channel TEXT) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT coalesce(p_channel = ANY (string_to_array(current_setting('agentpg.defer_notify', TRUE), ',')), FALSE)
$$;

-- The triggers test agentpg_notify_deferred first, so a deferred notification does not even build its payload.
CREATE FUNCTION agentpg_notify(p_channel TEXT, p_payload TEXT) RETURNS VOID
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF agentpg_notify_deferred(p_channel) THEN
        RETURN;
    END IF;
    PERFORM pg_notify(agentpg_channel(p_channel), p_payload);
END
$$;

-- ---------------------------------------------------------------------------------------------------------
-- Logged tables
-- ---------------------------------------------------------------------------------------------------------

CREATE TABLE agentpg_sessions (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_session_id  UUID REFERENCES agentpg_sessions (id) ON DELETE CASCADE,
    depth              INTEGER NOT NULL DEFAULT 0,
    metadata           JSONB NOT NULL DEFAULT '{}',
    compaction_count   INTEGER NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT session_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT session_depth_consistency CHECK (
        (parent_session_id IS NULL AND depth = 0) OR (parent_session_id IS NOT NULL AND depth > 0))
);
CREATE INDEX agentpg_idx_sessions_metadata ON agentpg_sessions USING GIN (metadata);
CREATE INDEX agentpg_idx_sessions_updated ON agentpg_sessions (updated_at DESC);
CREATE INDEX agentpg_idx_sessions_created ON agentpg_sessions (created_at DESC);
CREATE INDEX agentpg_idx_sessions_parent ON agentpg_sessions (parent_session_id) WHERE parent_session_id IS NOT NULL;

CREATE TABLE agentpg_agents (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name           TEXT NOT NULL,
    description    TEXT,
    model          TEXT NOT NULL,
    system_prompt  TEXT,
    max_tokens     INTEGER,
    temperature    REAL,
    top_k          INTEGER,
    top_p          REAL,
    -- NULL = every tool of the executing instance; '{}' = no tools; otherwise exactly these.
    tool_names     TEXT[] DEFAULT '{}',
    agent_ids      UUID[] NOT NULL DEFAULT '{}',
    -- Tools and agent tools whose calls wait for a person's decision ('*' = all); NULL = none.
    tools_requiring_approval  TEXT[],
    -- Claude's thinking and output_config.effort for the agent's model calls (AgentDefinition.Thinking, Effort); NULL = not sent.
    thinking       JSONB,
    effort         TEXT,
    -- The JSON schema of the agent's answers (structured outputs), as its text: json, not jsonb, keeps the properties'
    -- order, which is the order Claude writes them in.
    output_schema  JSON,
    -- Claude's memory tool for the agent (AgentDefinition.Memory: the store's scope and limits); NULL = no memory tool.
    memory         JSONB,
    -- Claude's server tools for the agent (AgentDefinition.ServerTools): [{"definition": {...}, "beta": ..., "always_loaded": [...]}];
    -- json, not jsonb, keeps each definition's text as configured (it is part of the prompt's cached prefix). NULL = none.
    server_tools   JSON,
    -- Run limits (AgentDefinition.MaxIterations, TokenBudget); NULL = none. The budget bounds a root run's whole tree.
    max_iterations INTEGER,
    token_budget   BIGINT,
    metadata       JSONB NOT NULL DEFAULT '{}',
    config         JSONB NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT agent_name_valid CHECK (char_length(name) > 0 AND char_length(name) < 256),
    CONSTRAINT agent_model_valid CHECK (char_length(model) > 0),
    CONSTRAINT agent_max_tokens_valid CHECK (max_tokens IS NULL OR max_tokens > 0),
    CONSTRAINT agent_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT agent_config_object CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT agent_thinking_object CHECK (thinking IS NULL OR jsonb_typeof(thinking) = 'object'),
    CONSTRAINT agent_effort_valid CHECK (effort IS NULL OR effort IN ('low', 'medium', 'high', 'xhigh', 'max')),
    CONSTRAINT agent_output_schema_object CHECK (output_schema IS NULL OR json_typeof(output_schema) = 'object'),
    CONSTRAINT agent_memory_object CHECK (memory IS NULL OR jsonb_typeof(memory) = 'object'),
    CONSTRAINT agent_server_tools_array CHECK (server_tools IS NULL OR json_typeof(server_tools) = 'array'),
    CONSTRAINT agent_max_iterations_valid CHECK (max_iterations IS NULL OR max_iterations BETWEEN 1 AND 10000),
    CONSTRAINT agent_token_budget_valid CHECK (token_budget IS NULL OR token_budget > 0),
    CONSTRAINT agent_unique_name_metadata UNIQUE (name, metadata)
);
CREATE INDEX agentpg_idx_agents_metadata ON agentpg_agents USING GIN (metadata);
CREATE INDEX agentpg_idx_agents_name ON agentpg_agents (name);
CREATE INDEX agentpg_idx_agents_updated ON agentpg_agents (updated_at DESC);
-- Finds the agents that delegate to a given agent (rename checks, UI).
CREATE INDEX agentpg_idx_agents_agent_ids ON agentpg_agents USING GIN (agent_ids);

CREATE TABLE agentpg_tools (
    name           TEXT PRIMARY KEY,
    description    TEXT NOT NULL,
    input_schema   JSONB NOT NULL,
    is_agent_tool  BOOLEAN NOT NULL DEFAULT FALSE,
    agent_id       UUID REFERENCES agentpg_agents (id) ON DELETE CASCADE,
    metadata       JSONB NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT tool_name_valid CHECK (char_length(name) > 0 AND char_length(name) < 128),
    CONSTRAINT agent_tool_consistency CHECK (
        (is_agent_tool AND agent_id IS NOT NULL) OR (NOT is_agent_tool AND agent_id IS NULL)),
    CONSTRAINT tool_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE INDEX agentpg_idx_tools_agent ON agentpg_tools (agent_id) WHERE is_agent_tool = TRUE;

CREATE TABLE agentpg_runs (
    id                           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- FIFO position: claims and the one-root-run-per-session rule order by it (created_at can tie).
    seq                          BIGINT GENERATED ALWAYS AS IDENTITY,
    session_id                   UUID NOT NULL REFERENCES agentpg_sessions (id) ON DELETE CASCADE,
    -- No ON DELETE: deleting an agent that has runs is refused (AgentInUse).
    agent_id                     UUID NOT NULL REFERENCES agentpg_agents (id),
    run_mode                     agentpg_run_mode NOT NULL DEFAULT 'batch',
    parent_run_id                UUID REFERENCES agentpg_runs (id) ON DELETE CASCADE,
    parent_tool_execution_id     UUID,
    -- The run at the top of this run's hierarchy (itself for a root run); set on insert. Live events are per root run.
    root_run_id                  UUID,
    -- The W3C trace context of the code that created the run (OpenTelemetry): the run's spans continue its trace.
    traceparent                  TEXT,
    depth                        INTEGER NOT NULL DEFAULT 0,
    state                        agentpg_run_state NOT NULL DEFAULT 'pending',
    previous_state               agentpg_run_state,
    prompt                       TEXT NOT NULL,
    idempotency_key              TEXT,
    current_iteration            INTEGER NOT NULL DEFAULT 0,
    -- The iteration current_iteration started (an agentpg_iterations row of this run; no foreign key, since an iteration is
    -- deleted only with its run, and the claim names the iteration it inserts right after).
    current_iteration_id         UUID,
    response_text                TEXT,
    stop_reason                  TEXT,
    -- Sums over the run's iterations, so BIGINT: a long cached run (thousands of iterations reading ~1M tokens from the
    -- cache each) passes 2^31. An iteration's own counts are one model call's (bounded by the context window): INTEGER.
    input_tokens                 BIGINT NOT NULL DEFAULT 0,
    output_tokens                BIGINT NOT NULL DEFAULT 0,
    cache_creation_input_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_read_input_tokens      BIGINT NOT NULL DEFAULT 0,
    iteration_count              INTEGER NOT NULL DEFAULT 0,
    tool_iterations              INTEGER NOT NULL DEFAULT 0,
    continuation_count           INTEGER NOT NULL DEFAULT 0,
    error_message                TEXT,
    -- What ended a failed or cancelled run: processing_error, model_error, batch_error, batch_expired,
    -- context_window_exceeded, max_tokens_exceeded, continuation_limit, iteration_limit, token_budget_exceeded,
    -- rescue_failed, cancelled
    error_type                   TEXT,
    created_by_instance_id       TEXT,
    claimed_by_instance_id       TEXT,
    claimed_at                   TIMESTAMPTZ,
    -- Fencing token: bumped on every claim and every release. Workers write only while it still matches.
    claim_epoch                  BIGINT NOT NULL DEFAULT 0,
    -- Last sign of life of the claimed work (claim, stream progress); RescueTimeout measures from it.
    last_progress_at             TIMESTAMPTZ,
    metadata                     JSONB NOT NULL DEFAULT '{}',
    options                      JSONB NOT NULL DEFAULT '{}',
    created_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at                   TIMESTAMPTZ,
    finalized_at                 TIMESTAMPTZ,
    rescue_attempts              INTEGER NOT NULL DEFAULT 0,
    last_rescue_at               TIMESTAMPTZ,
    -- Live events (root runs only): set for good by a first watcher, in a transaction of its own, before it creates the
    -- root's event head (agentpg_mark_run_watched). A transaction that holds this row locked and reads it unset knows no
    -- watcher can start before it commits, and skips the root's events without a lock or a probe. Not indexed.
    watched                      BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT run_finalized_consistency CHECK (
        (state IN ('completed', 'cancelled', 'failed')) = (finalized_at IS NOT NULL)),
    CONSTRAINT run_depth_consistency CHECK (
        (parent_run_id IS NULL AND depth = 0) OR (parent_run_id IS NOT NULL AND depth > 0)),
    CONSTRAINT run_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT run_options_object CHECK (jsonb_typeof(options) = 'object'),
    CONSTRAINT run_idempotency_key_valid CHECK (idempotency_key IS NULL OR char_length(idempotency_key) BETWEEN 1 AND 255)
);
-- No index of agentpg_runs names a column that a run's claim, its progress or its completion changes (state,
-- claimed_by_instance_id, claim_epoch, current_iteration…): those updates are HOT, a new row version on the same page and no
-- index entry. What needs the active runs by state, session or holder reads agentpg_run_queue (below). The free space per
-- page is for the HOT versions: a run row is updated two to four times (claim, completion; per tool round two more) within
-- moments of its insert, and a page's dead versions are pruned as soon as no snapshot sees them.
ALTER TABLE agentpg_runs SET (fillfactor = 70);
-- Idempotency keys are unique per session; runs without one take no entry.
CREATE UNIQUE INDEX agentpg_idx_runs_idempotency_key ON agentpg_runs (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX agentpg_idx_runs_session ON agentpg_runs (session_id, created_at DESC);
CREATE INDEX agentpg_idx_runs_agent ON agentpg_runs (agent_id);
CREATE INDEX agentpg_idx_runs_parent ON agentpg_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
-- The child runs of a root run's tree, for the tree's token budget (RunOptions.TokenBudget): its usage is summed before each
-- model call of a run with a budget. Child runs only (the root is found by its key), and root_run_id never changes.
CREATE INDEX agentpg_idx_runs_root ON agentpg_runs (root_run_id) WHERE parent_run_id IS NOT NULL;
-- Lists and dashboards (ListRunsAsync, GetRunStatisticsAsync): newest first, keyset by (created_at, id), and the runs of
-- a recent window. created_at never changes, so the index costs an entry per insert only.
CREATE INDEX agentpg_idx_runs_created ON agentpg_runs (created_at DESC);
-- Failed (and cancelled) runs newest first, the triage view of the admin UI and the CLI (ListRunsAsync with RunState.Failed):
-- a page of a tenant's failures reads a few hundred entries instead of every run in the window. Its predicate names
-- error_type, not state: every failed or cancelled run has an error type (agentpg_run_before_update and _insert default it),
-- and error_type changes only when a run fails or is cancelled, so the claim and the completion stay HOT.
CREATE INDEX agentpg_idx_runs_errored ON agentpg_runs (created_at DESC) WHERE error_type IS NOT NULL;

-- The active runs: one row per run that is not terminal, inserted with the run, kept in step with its state and deleted
-- when it finishes, all by the triggers on agentpg_runs (agentpg_trg_run_queue_*), whoever writes the run. Holds what the
-- claim (pending runs of a mode, FIFO), the one-root-run-per-session rule (a session's active root runs in order), the
-- rescue (claimed runs; their holder is read from the run row), the pending_tools sweep and the dashboards' queue depth
-- need, so that agentpg_runs itself needs no index naming state. Small (active runs only) and short-lived; the claim and
-- every other state change of a run rewrite its queue row here, in one or two index entries, instead of its run row in
-- every index of agentpg_runs. No foreign key (its check would lock the new run row on every insert): a deleted run takes
-- its queue row with it through agentpg_trg_run_queue_deleted.
CREATE TABLE agentpg_run_queue (
    session_id  UUID NOT NULL,
    -- The run's FIFO position (agentpg_runs.seq, unique).
    seq         BIGINT NOT NULL,
    run_id      UUID NOT NULL,
    run_mode    agentpg_run_mode NOT NULL,
    -- A root run (parent_run_id IS NULL): only root runs take part in the one-root-run-per-session rule.
    is_root     BOOLEAN NOT NULL,
    -- The run's state, never a terminal one.
    state       agentpg_run_state NOT NULL,
    -- The key is also the one-root-run-per-session rule's index (a session's active runs in order) and the triggers' way to
    -- a run's queue row (they know both from the run row): one index entry per write of a queue row, not two.
    PRIMARY KEY (session_id, seq),
    CONSTRAINT run_queue_state_active CHECK (state NOT IN ('completed', 'cancelled', 'failed'))
);
-- Claim path: pending runs of one mode in FIFO order.
CREATE INDEX agentpg_idx_run_queue_claim ON agentpg_run_queue (run_mode, seq) WHERE state = 'pending';

CREATE TABLE agentpg_messages (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Conversation order. BY DEFAULT so compaction can place a summary where the removed prefix was.
    seq           BIGINT GENERATED BY DEFAULT AS IDENTITY,
    session_id    UUID NOT NULL REFERENCES agentpg_sessions (id) ON DELETE CASCADE,
    -- Deleting a run deletes its messages: they never become part of another conversation. Only compaction
    -- summaries (is_summary) have no run.
    run_id        UUID REFERENCES agentpg_runs (id) ON DELETE CASCADE,
    role          agentpg_message_role NOT NULL,
    -- The content blocks, in order, each exactly as Claude's Messages API has it (type, text, id, input, tool_use_id,
    -- content, source, signature… and any field of a block type added later): blocks Claude returned are stored as it
    -- sent them and sent back verbatim. One addition: a tool_result whose content is an array of blocks (a tool that
    -- returned images or documents) carries its text form in "agentpg_text", which is never sent to Claude.
    -- In the row, not a row per block: a message is written once, read whole, and never queried by block.
    content       JSONB NOT NULL DEFAULT '[]',
    usage         JSONB NOT NULL DEFAULT '{}',
    is_preserved  BOOLEAN NOT NULL DEFAULT FALSE,
    is_summary    BOOLEAN NOT NULL DEFAULT FALSE,
    metadata      JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT message_content_array CHECK (jsonb_typeof(content) = 'array'),
    CONSTRAINT message_usage_object CHECK (jsonb_typeof(usage) = 'object'),
    CONSTRAINT message_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
-- The conversation order of a session (unique: compaction gives a summary the seq of the prefix it replaced). One index
-- for both the order and the session's messages: every message is an entry in each index of the table.
CREATE UNIQUE INDEX agentpg_idx_messages_session ON agentpg_messages (session_id, seq);
CREATE INDEX agentpg_idx_messages_run ON agentpg_messages (run_id, seq) WHERE run_id IS NOT NULL;
CREATE INDEX agentpg_idx_messages_preserved ON agentpg_messages (session_id) WHERE is_preserved;

CREATE TABLE agentpg_iterations (
    id                           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id                       UUID NOT NULL REFERENCES agentpg_runs (id) ON DELETE CASCADE,
    iteration_number             INTEGER NOT NULL,
    is_streaming                 BOOLEAN NOT NULL DEFAULT FALSE,
    batch_id                     TEXT,
    batch_request_id             TEXT,
    batch_status                 agentpg_batch_status,
    batch_submitted_at           TIMESTAMPTZ,
    batch_completed_at           TIMESTAMPTZ,
    batch_expires_at             TIMESTAMPTZ,
    batch_poll_count             INTEGER NOT NULL DEFAULT 0,
    batch_last_poll_at           TIMESTAMPTZ,
    -- Resubmissions after a canceled or missing result (at most AgentPgOptions.MaxModelRetries). Resubmissions for Claude
    -- being unavailable are counted in batch_unavailable_count, those for the context window not at all (that policy ends).
    batch_resubmit_count         INTEGER NOT NULL DEFAULT 0,
    batch_expired_count          INTEGER NOT NULL DEFAULT 0,
    -- When the iteration's first batch result errored with Claude unavailable (overloaded, rate limited, failing): its
    -- resubmissions go on until AgentPgOptions.ModelUnavailableTimeout has passed since then.
    batch_unavailable_since      TIMESTAMPTZ,
    -- Resubmissions after such results: the exponent of the next wait's backoff (and, with ModelUnavailableTimeout zero,
    -- at most MaxModelRetries).
    batch_unavailable_count      INTEGER NOT NULL DEFAULT 0,
    -- Set while the iteration waits out Claude's unavailability: its batch ended errored, and the poller resubmits the
    -- request once this time has come (durable, so an instance that adopts the run keeps the wait); cleared by the
    -- resubmission.
    batch_resubmit_at            TIMESTAMPTZ,
    -- The request was sent with the 1M-token context window beta.
    extended_context             BOOLEAN NOT NULL DEFAULT FALSE,
    streaming_started_at         TIMESTAMPTZ,
    streaming_completed_at       TIMESTAMPTZ,
    trigger_type                 TEXT NOT NULL DEFAULT 'user_prompt',
    -- Who made the call and under which claim: the claim history of the run.
    instance_id                  TEXT,
    claim_epoch                  BIGINT,
    -- max_tokens sent with this iteration (a continuation after a truncated tool_use doubles it).
    max_tokens                   INTEGER,
    request_message_ids          JSONB,
    stop_reason                  TEXT,
    response_message_id          UUID REFERENCES agentpg_messages (id) ON DELETE SET NULL,
    has_tool_use                 BOOLEAN NOT NULL DEFAULT FALSE,
    tool_execution_count         INTEGER NOT NULL DEFAULT 0,
    input_tokens                 INTEGER NOT NULL DEFAULT 0,
    output_tokens                INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens      INTEGER NOT NULL DEFAULT 0,
    -- Of cache_creation_input_tokens, those written with a 1-hour lifetime (usage.cache_creation.ephemeral_1h_input_tokens):
    -- billed higher than 5-minute writes. The model the request named (the agent's model then); NULL for an iteration that
    -- failed before its request was built. Both written with the usage, in the statement that records it, for GetUsageAsync.
    cache_creation_1h_input_tokens INTEGER NOT NULL DEFAULT 0,
    -- Server tool uses Claude bills per use (usage.server_tool_use): web searches (priced per 1 000) and web fetches; NULL when
    -- the answer ran none (most iterations: a NULL costs a bit of the row's null bitmap, a 0 four bytes). Written with the usage.
    web_search_requests          INTEGER,
    web_fetch_requests           INTEGER,
    model                        TEXT,
    error_message                TEXT,
    error_type                   TEXT,
    created_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at                   TIMESTAMPTZ,
    completed_at                 TIMESTAMPTZ,
    CONSTRAINT unique_iteration_per_run UNIQUE (run_id, iteration_number),
    CONSTRAINT iteration_trigger_type_valid CHECK (trigger_type IN ('user_prompt', 'tool_results', 'continuation'))
);
-- An iteration row is written twice: inserted by the claim, updated with the answer's outcome and usage. No index names a
-- column the completion changes, so that update is HOT when its page has room for the new version: the free space per
-- page is for it (as for agentpg_runs). With pages filled to the brim by the claims' inserts, 14 % of the completions in
-- the closed loop and 57 % in a drain wrote a version on another page, an entry in both indexes of the table each.
ALTER TABLE agentpg_iterations SET (fillfactor = 70);
CREATE INDEX agentpg_idx_iterations_batch ON agentpg_iterations (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX agentpg_idx_iterations_polling ON agentpg_iterations (batch_status, batch_last_poll_at NULLS FIRST)
    WHERE batch_status = 'in_progress';

CREATE TABLE agentpg_tool_executions (
    id                      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id                  UUID NOT NULL REFERENCES agentpg_runs (id) ON DELETE CASCADE,
    iteration_id            UUID NOT NULL REFERENCES agentpg_iterations (id) ON DELETE CASCADE,
    -- Order of the tool_use block in the assistant message; tool_results are written in this order.
    position                INTEGER NOT NULL DEFAULT 0,
    state                   agentpg_tool_execution_state NOT NULL DEFAULT 'pending',
    tool_use_id             TEXT NOT NULL,
    tool_name               TEXT NOT NULL,
    tool_input              JSONB NOT NULL,
    is_agent_tool           BOOLEAN NOT NULL DEFAULT FALSE,
    -- A call of Claude's memory tool by an agent with AgentDefinition.Memory: AgentPg executes it itself, on any instance.
    is_memory_tool          BOOLEAN NOT NULL DEFAULT FALSE,
    agent_id                UUID REFERENCES agentpg_agents (id),
    child_run_id            UUID REFERENCES agentpg_runs (id) ON DELETE SET NULL,
    tool_output             TEXT,
    -- Claude content blocks of a result with images or documents (IContentTool), sent as the tool_result's content;
    -- tool_output then holds their text. NULL for text results.
    tool_output_content     JSONB,
    is_error                BOOLEAN NOT NULL DEFAULT FALSE,
    error_message           TEXT,
    claimed_by_instance_id  TEXT,
    claimed_at              TIMESTAMPTZ,
    claim_epoch             BIGINT NOT NULL DEFAULT 0,
    attempt_count           INTEGER NOT NULL DEFAULT 0,
    max_attempts            INTEGER NOT NULL DEFAULT 2,
    scheduled_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    snooze_count            INTEGER NOT NULL DEFAULT 0,
    rescue_attempts         INTEGER NOT NULL DEFAULT 0,
    last_error              TEXT,
    -- Approvals: whether the call had to wait for a person, and the decision (approved or rejected, the comment or
    -- rejection reason, who and when). approval_original_input keeps Claude's input when the approver edited it.
    approval_required        BOOLEAN NOT NULL DEFAULT FALSE,
    approval_decision        TEXT,
    approval_comment         TEXT,
    approval_decided_by      TEXT,
    approval_decided_at      TIMESTAMPTZ,
    approval_original_input  JSONB,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at              TIMESTAMPTZ,
    completed_at            TIMESTAMPTZ,
    CONSTRAINT tool_exec_state_consistency CHECK (
        (state IN ('completed', 'failed', 'skipped') AND completed_at IS NOT NULL)
        OR (state IN ('pending', 'running', 'awaiting_approval') AND completed_at IS NULL)),
    CONSTRAINT tool_exec_approval_consistency CHECK (
        (approval_decision IS NULL OR approval_decision IN ('approved', 'rejected'))
        AND (state <> 'awaiting_approval' OR (approval_required AND approval_decision IS NULL))),
    CONSTRAINT tool_exec_agent_consistency CHECK (
        (is_agent_tool AND agent_id IS NOT NULL) OR (NOT is_agent_tool AND agent_id IS NULL)),
    CONSTRAINT tool_exec_unique_use UNIQUE (iteration_id, tool_use_id)
);
CREATE INDEX agentpg_idx_tool_exec_pending_scheduled ON agentpg_tool_executions (scheduled_at, created_at)
    WHERE state = 'pending';
CREATE INDEX agentpg_idx_tool_exec_claimed_instance ON agentpg_tool_executions (claimed_by_instance_id)
    WHERE claimed_by_instance_id IS NOT NULL;
CREATE INDEX agentpg_idx_tool_exec_run ON agentpg_tool_executions (run_id);
CREATE INDEX agentpg_idx_tool_exec_child_run ON agentpg_tool_executions (child_run_id) WHERE child_run_id IS NOT NULL;
CREATE INDEX agentpg_idx_tool_exec_agent ON agentpg_tool_executions (agent_id) WHERE agent_id IS NOT NULL;
-- ListToolExecutionsAsync: newest first, keyset by (created_at, id). created_at never changes.
CREATE INDEX agentpg_idx_tool_exec_created ON agentpg_tool_executions (created_at DESC);
-- The approval inbox (GetPendingApprovalsAsync) and the leader's approval timeout, oldest first.
CREATE INDEX agentpg_idx_tool_exec_awaiting ON agentpg_tool_executions (created_at) WHERE state = 'awaiting_approval';

ALTER TABLE agentpg_runs ADD CONSTRAINT agentpg_fk_runs_parent_tool_execution
    FOREIGN KEY (parent_tool_execution_id) REFERENCES agentpg_tool_executions (id) ON DELETE SET NULL;

-- Claude's memory tool (AgentDefinition.Memory): a store per agent, per agent and session, or per agent and session
-- metadata value (a tenant), each holding files under /memories. Writes to a store lock its row first (the INSERT … ON
-- CONFLICT DO UPDATE that finds or creates it), so two runs writing one store serialise and its size limit holds.
-- Deleting the agent or the session of a store deletes the store and its files.
CREATE TABLE agentpg_memory_stores (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id        UUID NOT NULL REFERENCES agentpg_agents (id) ON DELETE CASCADE,
    session_id      UUID REFERENCES agentpg_sessions (id) ON DELETE CASCADE,
    metadata_key    TEXT,
    metadata_value  TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT memory_store_scope CHECK (session_id IS NULL OR metadata_key IS NULL),
    CONSTRAINT memory_store_metadata CHECK ((metadata_key IS NULL) = (metadata_value IS NULL)),
    CONSTRAINT memory_store_unique UNIQUE NULLS NOT DISTINCT (agent_id, session_id, metadata_key, metadata_value)
);
CREATE INDEX agentpg_idx_memory_stores_session ON agentpg_memory_stores (session_id) WHERE session_id IS NOT NULL;

-- The files of a memory store; directories are implied by the paths ('/memories/a/b.md' makes '/memories/a').
CREATE TABLE agentpg_memory_files (
    store_id    UUID NOT NULL REFERENCES agentpg_memory_stores (id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    content     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, path),
    CONSTRAINT memory_file_path CHECK (starts_with(path, '/memories/'))
);

CREATE TABLE agentpg_compaction_events (
    id                     UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id             UUID NOT NULL REFERENCES agentpg_sessions (id) ON DELETE CASCADE,
    strategy               TEXT NOT NULL,
    -- manual (CompactAsync), auto (over the trigger before a request), context_window (prompt too long).
    reason                 TEXT NOT NULL DEFAULT 'manual',
    original_tokens        INTEGER NOT NULL,
    compacted_tokens       INTEGER NOT NULL,
    messages_removed       INTEGER NOT NULL,
    messages_pruned        INTEGER NOT NULL DEFAULT 0,
    summary_content        TEXT,
    -- The user-role message that took the place of the removed prefix; restore deletes it.
    summary_message_id     UUID,
    preserved_message_ids  JSONB NOT NULL DEFAULT '[]',
    model_used             TEXT,
    usage                  JSONB NOT NULL DEFAULT '{}',
    duration_ms            BIGINT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    restored_at            TIMESTAMPTZ,
    CONSTRAINT compaction_usage_object CHECK (jsonb_typeof(usage) = 'object')
);
CREATE INDEX agentpg_idx_compaction_session ON agentpg_compaction_events (session_id, created_at DESC);
-- ListCompactionEventsAsync across sessions.
CREATE INDEX agentpg_idx_compaction_created ON agentpg_compaction_events (created_at DESC);

-- What a compaction removed or rewrote, exactly as it was, so RestoreCompactionAsync can put it back:
-- {"format": 1, "action": "removed" | "pruned", "message": <agentpg_messages row, its content included>,
--  "iterations": [ids of iterations whose response_message_id was this message]}.
-- A message can be archived by several compactions (pruned by one, removed by a later one), hence the key.
CREATE TABLE agentpg_message_archive (
    id                   UUID NOT NULL,
    compaction_event_id  UUID NOT NULL REFERENCES agentpg_compaction_events (id) ON DELETE CASCADE,
    session_id           UUID NOT NULL REFERENCES agentpg_sessions (id) ON DELETE CASCADE,
    original_message     JSONB NOT NULL,
    archived_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (compaction_event_id, id)
);
CREATE INDEX agentpg_idx_archive_session ON agentpg_message_archive (session_id, archived_at DESC);

-- ---------------------------------------------------------------------------------------------------------
-- UNLOGGED tables: liveness and leadership, rebuilt by the instances themselves after a crash.
-- ---------------------------------------------------------------------------------------------------------

CREATE UNLOGGED TABLE agentpg_instances (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    hostname              TEXT,
    pid                   INTEGER,
    version               TEXT,
    max_concurrent_runs   INTEGER NOT NULL DEFAULT 10,
    max_concurrent_tools  INTEGER NOT NULL DEFAULT 50,
    metadata              JSONB NOT NULL DEFAULT '{}',
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_heartbeat_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- What the instance's workers were working on at its last heartbeat (run and tool execution ids), and when;
    -- see agentpg_release_unheld_work.
    held_work             UUID[] NOT NULL DEFAULT '{}',
    held_reported_at      TIMESTAMPTZ,
    CONSTRAINT instance_id_valid CHECK (char_length(id) > 0 AND char_length(id) < 128),
    CONSTRAINT instance_capacity_valid CHECK (max_concurrent_runs > 0 AND max_concurrent_tools > 0),
    CONSTRAINT instance_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE INDEX agentpg_idx_instances_heartbeat ON agentpg_instances (last_heartbeat_at);

CREATE UNLOGGED TABLE agentpg_instance_tools (
    instance_id    TEXT NOT NULL REFERENCES agentpg_instances (id) ON DELETE CASCADE,
    tool_name      TEXT NOT NULL REFERENCES agentpg_tools (name) ON DELETE CASCADE,
    registered_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, tool_name)
);
CREATE INDEX agentpg_idx_instance_tools_tool ON agentpg_instance_tools (tool_name);

CREATE UNLOGGED TABLE agentpg_leader (
    name        TEXT PRIMARY KEY DEFAULT 'default' CHECK (name = 'default'),
    leader_id   TEXT NOT NULL,
    elected_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT leader_id_valid CHECK (char_length(leader_id) > 0 AND char_length(leader_id) < 128)
);

-- ---------------------------------------------------------------------------------------------------------
-- Triggers on runs
-- ---------------------------------------------------------------------------------------------------------

-- previous_state and finalized_at on every transition, whoever makes it (reference defect 19).
CREATE FUNCTION agentpg_run_before_update() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        NEW.previous_state := OLD.state;
        IF NEW.state IN ('completed', 'cancelled', 'failed') THEN
            NEW.finalized_at := coalesce(NEW.finalized_at, now());
            -- A failed or cancelled run always has an error type (agentpg_idx_runs_errored lists them by it).
            IF NEW.state <> 'completed' THEN
                NEW.error_type := coalesce(NEW.error_type, CASE WHEN NEW.state = 'failed' THEN 'processing_error' ELSE 'cancelled' END);
            END IF;
        ELSE
            NEW.finalized_at := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
-- Skipped (no PL/pgSQL call) when the statement already wrote what the function would: the library's claim, completion,
-- failure and other state changes set previous_state and finalized_at themselves. The condition is exactly "the function
-- would change nothing", so a statement that does not (a hand-written UPDATE, an older library) still gets the function.
CREATE TRIGGER agentpg_trg_run_before_update BEFORE UPDATE OF state ON agentpg_runs
    FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM OLD.state
                       AND (NEW.previous_state IS DISTINCT FROM OLD.state
                            OR (NEW.finalized_at IS NULL) = (NEW.state IN ('completed', 'cancelled', 'failed'))
                            OR (NEW.state IN ('cancelled', 'failed') AND NEW.error_type IS NULL)))
    EXECUTE FUNCTION agentpg_run_before_update();

CREATE FUNCTION agentpg_run_before_insert() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.parent_run_id IS NULL THEN
        NEW.root_run_id := NEW.id;
    ELSE
        NEW.root_run_id := (SELECT coalesce(p.root_run_id, p.id) FROM agentpg_runs p WHERE p.id = NEW.parent_run_id);
    END IF;
    IF NEW.state IN ('completed', 'cancelled', 'failed') THEN
        NEW.finalized_at := coalesce(NEW.finalized_at, now());
        IF NEW.state <> 'completed' THEN
            NEW.error_type := coalesce(NEW.error_type, CASE WHEN NEW.state = 'failed' THEN 'processing_error' ELSE 'cancelled' END);
        END IF;
    END IF;
    RETURN NEW;
END
$$;
-- Skipped (no PL/pgSQL call) for what the run insert of RunFastAsync and RunAsync writes: a pending root run that names
-- itself as its root.
CREATE TRIGGER agentpg_trg_run_before_insert BEFORE INSERT ON agentpg_runs
    FOR EACH ROW WHEN (NEW.parent_run_id IS NOT NULL OR NEW.root_run_id IS DISTINCT FROM NEW.id
                       OR NEW.state IN ('completed', 'cancelled', 'failed'))
    EXECUTE FUNCTION agentpg_run_before_insert();

-- Wakes the workers of every instance. Delivered at commit, so an uncommitted run stays invisible.
CREATE FUNCTION agentpg_notify_run_created() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF agentpg_notify_deferred('agentpg_run_created') THEN
        RETURN NULL;
    END IF;
    PERFORM agentpg_notify('agentpg_run_created',
        json_build_object('run_id', NEW.id, 'run_mode', NEW.run_mode, 'session_id', NEW.session_id,
                          'parent_run_id', NEW.parent_run_id)::text);
    RETURN NULL;
END
$$;
-- The deferral is tested in the trigger's condition too, so a deferred notification costs no PL/pgSQL call.
CREATE TRIGGER agentpg_trg_run_created AFTER INSERT ON agentpg_runs
    FOR EACH ROW WHEN (NEW.state = 'pending' AND NOT coalesce('agentpg_run_created' = ANY (string_to_array(current_setting('agentpg.defer_notify', TRUE), ',')), FALSE))
    EXECUTE FUNCTION agentpg_notify_run_created();

-- Keeps agentpg_run_queue in step with the run rows: a non-terminal run has its queue row with its state, a terminal or
-- deleted run none. Fires after the run row is written, so its lock (held by whoever writes the run) always comes before
-- the queue row's: the lock order run, then its queue row, holds everywhere.
CREATE FUNCTION agentpg_run_queue_sync() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM agentpg_run_queue WHERE session_id = OLD.session_id AND seq = OLD.seq;
    ELSIF NEW.state IN ('completed', 'cancelled', 'failed') THEN
        DELETE FROM agentpg_run_queue WHERE session_id = NEW.session_id AND seq = NEW.seq;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO agentpg_run_queue (run_id, session_id, seq, run_mode, is_root, state)
        VALUES (NEW.id, NEW.session_id, NEW.seq, NEW.run_mode, NEW.parent_run_id IS NULL, NEW.state);
    ELSE
        UPDATE agentpg_run_queue SET state = NEW.state WHERE session_id = NEW.session_id AND seq = NEW.seq;
        -- A terminal run made active again (by hand: the library never does) gets its queue row back.
        IF NOT FOUND THEN
            INSERT INTO agentpg_run_queue (run_id, session_id, seq, run_mode, is_root, state)
            VALUES (NEW.id, NEW.session_id, NEW.seq, NEW.run_mode, NEW.parent_run_id IS NULL, NEW.state);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER agentpg_trg_run_queue_insert AFTER INSERT ON agentpg_runs
    FOR EACH ROW WHEN (NEW.state NOT IN ('completed', 'cancelled', 'failed')) EXECUTE FUNCTION agentpg_run_queue_sync();
CREATE TRIGGER agentpg_trg_run_queue_state AFTER UPDATE OF state ON agentpg_runs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION agentpg_run_queue_sync();
CREATE TRIGGER agentpg_trg_run_queue_deleted AFTER DELETE ON agentpg_runs
    FOR EACH ROW WHEN (OLD.state NOT IN ('completed', 'cancelled', 'failed')) EXECUTE FUNCTION agentpg_run_queue_sync();

-- The mode of the session's next active root run, which the finished run p_run_id may have been holding back (one root
-- run per session at a time); NULL for child runs and when nothing waits. Workers claim on a finished run only when it
-- is set. The finished run is excluded by id: called from the RETURNING of its own UPDATE, this STABLE function still
-- sees the row as it was before (and its queue row, which the run's queue trigger deletes only after the statement).
-- The library's completion (RunSql.Complete) writes this query out in its RETURNING, a PL/pgSQL call per run less: keep
-- the two in step.
CREATE FUNCTION agentpg_next_root_run_mode(p_run_id UUID, p_session_id UUID, p_parent_run_id UUID) RETURNS TEXT
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT SET enable_seqscan = off AS $$
BEGIN
    IF p_parent_run_id IS NOT NULL THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT o.run_mode::text
              FROM agentpg_run_queue o
             WHERE o.session_id = p_session_id
               AND o.is_root
               AND o.run_id <> p_run_id
             ORDER BY o.seq
             LIMIT 1);
END
$$;

-- Only transitions another instance must act on are announced: back to pending (claimable again) on
-- agentpg_run_state, terminal (waiters, cancellation of in-flight work, the next queued run of the session)
-- on agentpg_run_finalized. Other transitions are visible by reading the row.
CREATE FUNCTION agentpg_notify_run_state_change() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.state = 'pending' THEN
        PERFORM agentpg_notify('agentpg_run_state',
            json_build_object('run_id', NEW.id, 'state', NEW.state, 'previous_state', OLD.state,
                              'run_mode', NEW.run_mode)::text);
    ELSIF NEW.state IN ('completed', 'cancelled', 'failed') AND NOT agentpg_notify_deferred('agentpg_run_finalized') THEN
        PERFORM agentpg_notify('agentpg_run_finalized',
            json_build_object('run_id', NEW.id, 'session_id', NEW.session_id, 'state', NEW.state,
                              'parent_run_id', NEW.parent_run_id, 'depth', NEW.depth,
                              'run_mode', NEW.run_mode,
                              'next_run_mode', agentpg_next_root_run_mode(NEW.id, NEW.session_id, NEW.parent_run_id))::text);
    END IF;
    RETURN NULL;
END
$$;
-- Fires only for the transitions it announces (not for a claim, nor for a finalization whose notification is deferred).
CREATE TRIGGER agentpg_trg_run_state_change AFTER UPDATE OF state ON agentpg_runs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                       AND (NEW.state = 'pending'
                            OR (NEW.state IN ('completed', 'cancelled', 'failed')
                                AND NOT coalesce('agentpg_run_finalized' = ANY (string_to_array(current_setting('agentpg.defer_notify', TRUE), ',')), FALSE))))
    EXECUTE FUNCTION agentpg_notify_run_state_change();

-- A child run (agent as tool) finished: complete the parent's tool execution with its answer or its error.
-- Lock order everywhere: a parent run before its child runs, a run before its tool executions. Whoever finalizes a
-- child run has locked the parent run first (the workers' final writes, agentpg_cancel_run, the rescue paths); the
-- lock here keeps the order for any other writer (a manual UPDATE) at least between the parent and its execution.
CREATE FUNCTION agentpg_handle_child_run_complete() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM agentpg_runs WHERE id = NEW.parent_run_id FOR NO KEY UPDATE;
    UPDATE agentpg_tool_executions
       SET state = CASE WHEN NEW.state = 'completed' THEN 'completed' ELSE 'failed' END::agentpg_tool_execution_state,
           tool_output = CASE WHEN NEW.state = 'completed' THEN coalesce(NEW.response_text, '') ELSE NULL END,
           is_error = (NEW.state <> 'completed'),
           error_message = CASE WHEN NEW.state = 'completed' THEN NULL
                                ELSE coalesce(NEW.error_message, 'child run ' || NEW.state) END,
           completed_at = now(),
           claimed_by_instance_id = NULL
     WHERE id = NEW.parent_tool_execution_id
       AND state = 'running';
    RETURN NULL;
END
$$;
CREATE TRIGGER agentpg_trg_child_run_complete AFTER UPDATE OF state ON agentpg_runs
    FOR EACH ROW
    WHEN (NEW.parent_tool_execution_id IS NOT NULL
          AND NEW.state IN ('completed', 'cancelled', 'failed')
          AND OLD.state NOT IN ('completed', 'cancelled', 'failed'))
    EXECUTE FUNCTION agentpg_handle_child_run_complete();

-- ---------------------------------------------------------------------------------------------------------
-- Tools-complete continuation (exactly once across instances)
-- ---------------------------------------------------------------------------------------------------------

-- A tool_result block as Claude's Messages API has it: the text as its content (none when empty), or, for a result with
-- content blocks (images, documents), the blocks as its content and the text in agentpg_text, which is never sent.
CREATE FUNCTION agentpg_tool_result_block(p_tool_use_id TEXT, p_text TEXT, p_blocks JSONB, p_is_error BOOLEAN) RETURNS JSONB
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('type', 'tool_result', 'tool_use_id', p_tool_use_id)
           || CASE WHEN p_blocks IS NOT NULL THEN jsonb_build_object('content', p_blocks, 'agentpg_text', coalesce(p_text, ''))
                   WHEN coalesce(p_text, '') <> '' THEN jsonb_build_object('content', p_text)
                   ELSE '{}'::jsonb END
           || CASE WHEN p_is_error THEN '{"is_error": true}'::jsonb ELSE '{}'::jsonb END
$$;

-- When every tool execution of the run's current iteration is terminal: write one user message with the
-- tool_results in tool_use order and put the run back to pending. The run row lock makes it happen once:
-- a second caller finds the run no longer in pending_tools and returns NULL.
CREATE FUNCTION agentpg_complete_tools_and_continue_run(p_run_id UUID) RETURNS UUID
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_run agentpg_runs%ROWTYPE;
    v_message_id UUID;
BEGIN
    SELECT * INTO v_run FROM agentpg_runs WHERE id = p_run_id FOR NO KEY UPDATE;
    IF NOT FOUND OR v_run.state <> 'pending_tools' OR v_run.current_iteration_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM agentpg_tool_executions
                WHERE iteration_id = v_run.current_iteration_id AND state IN ('pending', 'running', 'awaiting_approval')) THEN
        RETURN NULL;
    END IF;

    -- One tool_result per execution, in tool_use order. A result with content blocks (images, documents) sends them as its
    -- content and keeps its text form in agentpg_text; an empty text result has no content field. A call whose input the
    -- approver changed says so first: Claude's tool_use keeps the input Claude wrote, and without the note Claude would
    -- report what it asked for ("refunded 40") instead of what ran. The note is one line (the input and the comment as JSON),
    -- so compaction's pruning can keep it whole before the placeholder.
    INSERT INTO agentpg_messages (session_id, run_id, role, content)
    SELECT v_run.session_id, v_run.id, 'user',
           coalesce(jsonb_agg(agentpg_tool_result_block(
                        r.tool_use_id,
                        CASE WHEN r.note IS NULL THEN r.text WHEN r.text = '' THEN r.note ELSE r.note || E'\n\n' || r.text END,
                        CASE WHEN r.note IS NULL OR r.blocks IS NULL THEN r.blocks
                             ELSE jsonb_build_array(jsonb_build_object('type', 'text', 'text', r.note)) || r.blocks END,
                        r.is_error) ORDER BY r.position, r.created_at), '[]')
      FROM (SELECT te.tool_use_id, te.position, te.created_at,
                   CASE
                       WHEN te.state = 'skipped' THEN coalesce(te.error_message, 'Tool execution was skipped.')
                       WHEN coalesce(te.tool_output, '') = '' AND te.is_error THEN coalesce(te.error_message, 'Tool execution failed.')
                       ELSE coalesce(te.tool_output, '')
                   END AS text,
                   CASE WHEN te.state <> 'skipped' THEN te.tool_output_content END AS blocks,
                   te.is_error OR te.state = 'skipped' AS is_error,
                   CASE WHEN te.approval_original_input IS NOT NULL AND te.approval_original_input <> te.tool_input
                        THEN 'The approver changed the input of this call before it ran; it ran with ' || te.tool_input::text
                             || coalesce(' (comment: ' || to_jsonb(te.approval_comment)::text || ')', '') || '.'
                   END AS note
              FROM agentpg_tool_executions te
             WHERE te.iteration_id = v_run.current_iteration_id) r
    RETURNING id INTO v_message_id;

    UPDATE agentpg_runs
       SET state = 'pending',
           claimed_by_instance_id = NULL,
           claimed_at = NULL
     WHERE id = p_run_id;

    RETURN v_message_id;
END
$$;

-- A tool execution reached a terminal state: continue the run if it was the last one of its iteration.
-- Runs in the completing transaction; the run row is locked first so two tools finishing at once cannot
-- both see the other as still running (the second waits for the first and then sees its commit).
CREATE FUNCTION agentpg_tool_execution_after_update() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM agentpg_runs WHERE id = NEW.run_id FOR NO KEY UPDATE;
    IF NOT EXISTS (SELECT 1 FROM agentpg_tool_executions
                    WHERE iteration_id = NEW.iteration_id AND state IN ('pending', 'running', 'awaiting_approval')) THEN
        PERFORM agentpg_complete_tools_and_continue_run(NEW.run_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER agentpg_trg_tools_complete AFTER UPDATE OF state ON agentpg_tool_executions
    FOR EACH ROW
    WHEN (NEW.state IN ('completed', 'failed', 'skipped') AND OLD.state IN ('pending', 'running', 'awaiting_approval'))
    EXECUTE FUNCTION agentpg_tool_execution_after_update();

-- New tool executions wake the tool workers. The payload is the run id, so the tool_use blocks of one
-- assistant message produce a single notification (PostgreSQL folds identical notifications of a transaction).
CREATE FUNCTION agentpg_notify_tool_created() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF agentpg_notify_deferred('agentpg_tool_pending') THEN
        RETURN NULL;
    END IF;
    PERFORM agentpg_notify('agentpg_tool_pending', json_build_object('run_id', NEW.run_id)::text);
    RETURN NULL;
END
$$;
-- The deferral is tested in the trigger's condition too (as agentpg_trg_run_created does), so the executions the library
-- creates, which announce themselves after their commit, cost no PL/pgSQL call each.
CREATE TRIGGER agentpg_trg_tool_created AFTER INSERT ON agentpg_tool_executions
    FOR EACH ROW WHEN (NEW.state = 'pending' AND NOT coalesce('agentpg_tool_pending' = ANY (string_to_array(current_setting('agentpg.defer_notify', TRUE), ',')), FALSE))
    EXECUTE FUNCTION agentpg_notify_tool_created();

-- ---------------------------------------------------------------------------------------------------------
-- Claims and fencing
-- ---------------------------------------------------------------------------------------------------------

-- The claim's candidates: the oldest claimable pending runs of one mode, their run rows locked (SKIP LOCKED; the lock
-- rechecks the run's state, so a run claimed since this statement's snapshot is skipped). The queue row finds the pending
-- run, the run row is what is locked, and its queue row follows through the trigger.
-- Planned with sorts and bitmap scans off (and index scans on, whatever the session says), so that the one plan left is
-- the claim index's order, stopped after p_max_count claimable rows, whatever the number of pending runs: the queue holds
-- few rows in steady state, its statistics say so, and a plan cached from them (bitmap scan of every pending run, sort,
-- limit) costs about 100 ms a claim once a backlog of 20 000 runs builds up, until the next ANALYZE of the queue.
-- Materialize, hash and merge joins are off for the same reason on the run rows' side: statistics taken while pending runs
-- were rare (a history of finished runs) made the planner read every run of the agent (agentpg_idx_runs_agent) into a
-- Materialize and join each queued run against it, 21 ms a claim once 11 000 runs were pending; the plan left probes each
-- queued run's row by its primary key.
CREATE FUNCTION agentpg_claim_candidates(p_instance_id TEXT, p_max_count INTEGER, p_run_mode agentpg_run_mode)
RETURNS UUID[]
LANGUAGE plpgsql SET search_path FROM CURRENT SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
                 SET enable_indexscan = on SET enable_material = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    v_ids UUID[];
BEGIN
    SELECT coalesce(array_agg(c.id), '{}') INTO v_ids
      FROM (SELECT r.id
              FROM agentpg_run_queue q
              JOIN agentpg_runs r ON r.id = q.run_id
              JOIN agentpg_agents a ON a.id = r.agent_id
             WHERE q.state = 'pending'
               AND q.run_mode = p_run_mode
               AND r.state = 'pending'
               AND (a.tool_names IS NULL
                    OR a.tool_names <@ ARRAY(SELECT it.tool_name FROM agentpg_instance_tools it
                                              WHERE it.instance_id = p_instance_id))
               AND (NOT q.is_root
                    OR NOT EXISTS (SELECT 1 FROM agentpg_run_queue o
                                    WHERE o.session_id = q.session_id
                                      AND o.is_root
                                      AND o.seq < q.seq))
             ORDER BY q.seq
             LIMIT p_max_count
             FOR UPDATE OF r SKIP LOCKED) c;
    RETURN v_ids;
END
$$;

-- Claims up to p_max_count pending runs of one mode for an instance, oldest first, and starts each one's next iteration
-- in the same transaction. A run is claimable when:
--   * the instance registered every tool the agent lists (NULL or empty tool list: any instance), and
--   * it is a child run, or no older root run of the same session is still active (one root run per session).
-- Each claim bumps claim_epoch; the worker conditions every later write on it. The iteration start (what a worker used to
-- write in a second transaction right after the claim) is part of the claim: the run's prompt as the conversation's user
-- message (first iteration only) and the iteration row, whose trigger follows from the previous iteration's outcome
-- (the rule of NextIteration.Decide in the library: keep both in step). The claim commits asynchronously: if a server
-- crash loses it, it loses the iteration start with it, and the worker's next fenced write fails.
-- The claim functions (like agentpg_next_root_run_mode) plan with enable_seqscan off: their plans are cached per
-- connection, and a plan made while the tables were small would otherwise keep scanning them whole as they grow.
-- The set-returning functions declare a small ROWS estimate: callers join their rows to other tables, and the
-- default estimate (1000) makes the planner hash whole tables instead of probing their primary keys.
CREATE FUNCTION agentpg_claim_runs(p_instance_id TEXT, p_max_count INTEGER, p_run_mode agentpg_run_mode)
RETURNS SETOF agentpg_runs
LANGUAGE plpgsql ROWS 5 SET search_path FROM CURRENT SET enable_seqscan = off AS $$
DECLARE
    v_candidates UUID[];
    v_ids UUID[];
    v_unwatched UUID[];
    v_agents UUID[];
BEGIN
    v_candidates := agentpg_claim_candidates(p_instance_id, p_max_count, p_run_mode);
    IF cardinality(v_candidates) = 0 THEN
        RETURN;
    END IF;

    WITH claimed AS (
        -- current_iteration_id names the iteration inserted below (no foreign key: an iteration only goes with its run).
        UPDATE agentpg_runs r
           SET state = CASE WHEN p_run_mode = 'batch' THEN 'batch_submitting' ELSE 'streaming' END::agentpg_run_state,
               previous_state = r.state,
               claimed_by_instance_id = p_instance_id,
               -- The clock, not the transaction's start: created_at is the creating transaction's start, and a claim
               -- transaction that began before the creating one committed would otherwise read as claimed before created.
               claimed_at = clock_timestamp(),
               last_progress_at = now(),
               claim_epoch = r.claim_epoch + 1,
               started_at = coalesce(r.started_at, now()),
               current_iteration = r.current_iteration + 1,
               current_iteration_id = gen_random_uuid()
         WHERE r.id = ANY (v_candidates)
        RETURNING r.id, r.seq, r.agent_id, r.parent_run_id IS NULL AND NOT r.watched AS unwatched_root
    )
    SELECT array_agg(claimed.id ORDER BY claimed.seq), array_agg(claimed.id) FILTER (WHERE claimed.unwatched_root),
           array_agg(DISTINCT claimed.agent_id)
      INTO v_ids, v_unwatched, v_agents
      FROM claimed;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    -- For the statements after the claim in the same transaction, which read what the claimed runs' first iterations need
    -- (agents, delegates, conversations) without a round trip per run.
    PERFORM set_config('agentpg.claimed_runs', array_to_string(v_ids, ','), true),
            set_config('agentpg.claimed_agents', array_to_string(v_agents, ','), true);
    -- Root runs claimed with their watch marker unset: their rows stay locked to commit, so no watcher can start on them
    -- meanwhile, and the prompt's and the iteration's live events are skipped by their triggers' conditions.
    IF v_unwatched IS NOT NULL THEN
        PERFORM agentpg_run_event_skip(u) FROM unnest(v_unwatched) u;
    END IF;

    -- The prompt opens the run's part of the conversation (written once: only the first iteration has none before it).
    INSERT INTO agentpg_messages (session_id, run_id, role, content)
    SELECT r.session_id, r.id, 'user', jsonb_build_array(jsonb_build_object('type', 'text', 'text', r.prompt))
      FROM agentpg_runs r
     WHERE r.id = ANY (v_ids) AND r.current_iteration = 1 AND r.prompt <> ''
     ORDER BY r.seq;

    INSERT INTO agentpg_iterations (id, run_id, iteration_number, is_streaming, trigger_type, instance_id, claim_epoch,
                                    started_at, streaming_started_at)
    SELECT r.current_iteration_id, r.id, r.current_iteration, p_run_mode = 'streaming',
           CASE
               WHEN pi.id IS NULL THEN CASE WHEN r.current_iteration = 1 THEN 'user_prompt' ELSE 'tool_results' END
               -- Abandoned by a dead or stuck holder: do it again.
               WHEN pi.error_type = 'abandoned' THEN pi.trigger_type
               WHEN pi.error_type = 'truncated_tool_use' OR pi.stop_reason = 'pause_turn' THEN 'continuation'
               ELSE 'tool_results'
           END,
           p_instance_id, r.claim_epoch, now(), CASE WHEN p_run_mode = 'streaming' THEN now() END
      FROM agentpg_runs r
      LEFT JOIN agentpg_iterations pi ON pi.run_id = r.id AND pi.iteration_number = r.current_iteration - 1
     WHERE r.id = ANY (v_ids)
     ORDER BY r.seq;

    RETURN QUERY SELECT r.* FROM agentpg_runs r WHERE r.id = ANY (v_ids) ORDER BY r.seq;
END
$$;

-- Claims up to p_max_count due tool executions the instance can run: a regular tool it registered, or an
-- agent tool whose target agent's tools it has. Each claim bumps claim_epoch and attempt_count.
-- The claimed executions' root runs that nobody watches are found before the update, the way agentpg_append_run_event
-- finds them (the root's shared advisory lock, then no head), once per run instead of once per execution: their
-- tool_started events are then skipped by the trigger's condition, without a PL/pgSQL call per execution.
-- Planned as agentpg_claim_candidates is, and for the same reason (a queue small in steady state, a backlog faster than
-- ANALYZE): the one plan left walks agentpg_idx_tool_exec_pending_scheduled in order and stops after p_max_count claimable
-- executions, each one's agent probed by its key. With a sort or a bitmap scan allowed, a plan that read and sorted every
-- pending execution to claim one was a matter of statistics (200 pages a claim of one with 3 000 pending, against 40).
CREATE FUNCTION agentpg_claim_tool_executions(p_instance_id TEXT, p_max_count INTEGER)
RETURNS SETOF agentpg_tool_executions
LANGUAGE plpgsql ROWS 5 SET search_path FROM CURRENT SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
                         SET enable_indexscan = on SET enable_material = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    v_ids UUID[];
    v_roots UUID[];
BEGIN
    WITH my_tools AS (
        SELECT ARRAY(SELECT it.tool_name FROM agentpg_instance_tools it WHERE it.instance_id = p_instance_id) AS names
    ), candidates AS (
        SELECT te.id, te.run_id
          FROM agentpg_tool_executions te
          LEFT JOIN agentpg_agents a ON a.id = te.agent_id
         CROSS JOIN my_tools m
         WHERE te.state = 'pending'
           AND te.scheduled_at <= now()
           AND CASE WHEN te.is_agent_tool
                    THEN a.tool_names IS NULL OR a.tool_names <@ m.names
                    WHEN te.is_memory_tool THEN TRUE
                    ELSE te.tool_name = ANY (m.names)
               END
         ORDER BY te.scheduled_at, te.created_at
         LIMIT p_max_count
         FOR UPDATE OF te SKIP LOCKED
    )
    SELECT array_agg(c.id), array_agg(DISTINCT c.run_id) INTO v_ids, v_roots FROM candidates c;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    SELECT array_agg(r.id) INTO v_roots
      FROM agentpg_runs r
     WHERE r.id = ANY (v_roots) AND r.parent_run_id IS NULL AND NOT r.watched
       AND NOT agentpg_run_event_unwatched(r.id);
    IF v_roots IS NOT NULL THEN
        -- The lock first, then the lookup in a statement of its own (a snapshot taken after the lock).
        PERFORM pg_advisory_xact_lock_shared(agentpg_run_event_lock_key(u)) FROM unnest(v_roots) u;
        PERFORM agentpg_run_event_skip(u) FROM unnest(v_roots) u
         WHERE NOT EXISTS (SELECT 1 FROM agentpg_run_event_heads h WHERE h.root_run_id = u);
    END IF;

    RETURN QUERY
    UPDATE agentpg_tool_executions te
       SET state = 'running',
           claimed_by_instance_id = p_instance_id,
           claimed_at = now(),
           started_at = now(),
           claim_epoch = te.claim_epoch + 1,
           attempt_count = te.attempt_count + 1
     WHERE te.id = ANY (v_ids)
    RETURNING te.*;
END
$$;

-- Raises SQLSTATE AP001 unless the run is still claimed by this instance under this epoch (and, when given, its
-- current iteration is p_iteration_id); locks the row. Every write a worker makes after a claim starts with this call
-- in the same transaction (or batch). The iteration check lets claims and iteration starts commit asynchronously:
-- if a server crash loses one, the next fenced write fails instead of recording an answer without its start.
CREATE FUNCTION agentpg_fence_run(p_run_id UUID, p_instance_id TEXT, p_claim_epoch BIGINT, p_iteration_id UUID DEFAULT NULL)
RETURNS VOID
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_unwatched_root BOOLEAN;
BEGIN
    SELECT parent_run_id IS NULL AND NOT watched INTO v_unwatched_root FROM agentpg_runs
     WHERE id = p_run_id AND claimed_by_instance_id = p_instance_id AND claim_epoch = p_claim_epoch
       AND state NOT IN ('completed', 'cancelled', 'failed')
       AND (p_iteration_id IS NULL OR current_iteration_id = p_iteration_id)
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % is no longer claimed by instance % with epoch %', p_run_id, p_instance_id, p_claim_epoch
            USING ERRCODE = 'AP001';
    END IF;
    -- A root run locked with its watch marker unset (see agentpg_runs.watched): skip its live events in this transaction.
    IF v_unwatched_root THEN
        PERFORM agentpg_run_event_skip(p_run_id);
    END IF;
END
$$;

-- What agentpg_fence_run raises, for the workers' plain-SQL fence (a prepared statement that locks the run row and
-- calls this only when no row matched): the common case costs no function call.
CREATE FUNCTION agentpg_claim_lost(p_run_id UUID, p_instance_id TEXT, p_claim_epoch BIGINT) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'run % is no longer claimed by instance % with epoch %', p_run_id, p_instance_id, p_claim_epoch
        USING ERRCODE = 'AP001';
END
$$;

-- Same for a tool execution. The run row is locked first (lock order: run, then its tool executions). A root run locked
-- with its watch marker unset: its live events are skipped in this transaction, as agentpg_fence_run does (the execution's
-- completion, and the continuation when it is the iteration's last).
CREATE FUNCTION agentpg_fence_tool_execution(p_execution_id UUID, p_instance_id TEXT, p_claim_epoch BIGINT) RETURNS VOID
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_run_id UUID;
    v_unwatched_root BOOLEAN;
BEGIN
    SELECT run_id INTO v_run_id FROM agentpg_tool_executions WHERE id = p_execution_id;
    IF FOUND THEN
        SELECT parent_run_id IS NULL AND NOT watched INTO v_unwatched_root FROM agentpg_runs WHERE id = v_run_id FOR NO KEY UPDATE;
        PERFORM 1 FROM agentpg_tool_executions
         WHERE id = p_execution_id AND claimed_by_instance_id = p_instance_id AND claim_epoch = p_claim_epoch
           AND state = 'running'
           FOR NO KEY UPDATE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tool execution % is no longer claimed by instance % with epoch %', p_execution_id, p_instance_id, p_claim_epoch
            USING ERRCODE = 'AP001';
    END IF;
    IF v_unwatched_root THEN
        PERFORM agentpg_run_event_skip(v_run_id);
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------------------
-- Tool executions from an assistant message (reference function, fenced)
-- ---------------------------------------------------------------------------------------------------------

-- Inserts one tool execution per element of p_tool_params ({id, iteration_id, tool_use_id, tool_name, tool_input,
-- is_agent_tool, is_memory_tool, agent_id, max_attempts, position}, plus state/error_message for executions that fail before
-- running: unknown tool, invalid input; or state awaiting_approval for calls that wait for a person) and moves the run to p_new_state with p_run_updates applied
-- (tool_iterations, token counters, iteration_count, response_text, stop_reason). Fenced. When every execution
-- is already terminal the run continues at once (tool_result message, back to pending). Counters in
-- p_run_updates are added to the run's (the reference replaced them with client-computed totals).
CREATE FUNCTION agentpg_create_tool_executions_and_update_run(
    p_tool_params JSONB, p_run_id UUID, p_new_state agentpg_run_state, p_run_updates JSONB,
    p_instance_id TEXT, p_claim_epoch BIGINT)
RETURNS SETOF agentpg_tool_executions
LANGUAGE plpgsql ROWS 5 SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM agentpg_fence_run(p_run_id, p_instance_id, p_claim_epoch);

    RETURN QUERY
    INSERT INTO agentpg_tool_executions (id, run_id, iteration_id, tool_use_id, tool_name, tool_input, is_agent_tool,
                                         is_memory_tool, agent_id, max_attempts, position, state, is_error, error_message,
                                         tool_output, completed_at, approval_required)
    SELECT coalesce((p->>'id')::uuid, gen_random_uuid()),
           p_run_id,
           (p->>'iteration_id')::uuid,
           p->>'tool_use_id',
           p->>'tool_name',
           coalesce(p->'tool_input', '{}'::jsonb),
           coalesce((p->>'is_agent_tool')::boolean, FALSE),
           coalesce((p->>'is_memory_tool')::boolean, FALSE),
           (p->>'agent_id')::uuid,
           coalesce((p->>'max_attempts')::int, 2),
           coalesce((p->>'position')::int, (ordinality - 1)::int),
           coalesce(p->>'state', 'pending')::agentpg_tool_execution_state,
           coalesce(p->>'state', 'pending') = 'failed',
           p->>'error_message',
           p->>'tool_output',
           CASE WHEN coalesce(p->>'state', 'pending') IN ('completed', 'failed', 'skipped') THEN now() END,
           coalesce(p->>'state', 'pending') = 'awaiting_approval'
      FROM jsonb_array_elements(p_tool_params) WITH ORDINALITY AS t(p, ordinality)
    RETURNING *;

    UPDATE agentpg_runs
       SET state = p_new_state,
           previous_state = CASE WHEN state = p_new_state THEN previous_state ELSE state END,
           tool_iterations = tool_iterations + coalesce((p_run_updates->>'tool_iterations')::int, 0),
           input_tokens = input_tokens + coalesce((p_run_updates->>'input_tokens')::int, 0),
           output_tokens = output_tokens + coalesce((p_run_updates->>'output_tokens')::int, 0),
           cache_creation_input_tokens = cache_creation_input_tokens + coalesce((p_run_updates->>'cache_creation_input_tokens')::int, 0),
           cache_read_input_tokens = cache_read_input_tokens + coalesce((p_run_updates->>'cache_read_input_tokens')::int, 0),
           iteration_count = iteration_count + coalesce((p_run_updates->>'iteration_count')::int, 0),
           response_text = CASE WHEN p_run_updates ? 'response_text' THEN p_run_updates->>'response_text' ELSE response_text END,
           stop_reason = CASE WHEN p_run_updates ? 'stop_reason' THEN p_run_updates->>'stop_reason' ELSE stop_reason END,
           claimed_by_instance_id = CASE WHEN p_new_state = 'pending_tools' THEN NULL ELSE claimed_by_instance_id END,
           claimed_at = CASE WHEN p_new_state = 'pending_tools' THEN NULL ELSE claimed_at END
     WHERE id = p_run_id;

    IF p_new_state = 'pending_tools' THEN
        PERFORM agentpg_complete_tools_and_continue_run(p_run_id);
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------------------
-- Approvals (human in the loop)
-- ---------------------------------------------------------------------------------------------------------

-- Decides an execution waiting in awaiting_approval, exactly once: returns 'not_found' (also when it was deleted while
-- this waited for its run), 'not_pending' (decided already, or its run was cancelled), 'approved' or 'rejected'. The run row is locked first (lock order: run, then its
-- executions), so a concurrent approve and reject of one execution serialise and the second finds it decided.
-- Approve: back to pending for any tool worker (p_input, already validated by the caller, replaces Claude's input, which
-- is kept in approval_original_input), announced on agentpg_tool_pending at commit. Reject: failed with an is_error
-- result carrying the reason; if it was the iteration's last open execution, agentpg_trg_tools_complete continues the
-- run in this same transaction. Runs in the caller's transaction when there is one: a rollback undoes the decision.
CREATE FUNCTION agentpg_decide_tool_approval(p_execution_id UUID, p_approve BOOLEAN, p_input JSONB, p_comment TEXT,
                                             p_decided_by TEXT)
RETURNS TEXT
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_run_id UUID;
BEGIN
    SELECT run_id INTO v_run_id FROM agentpg_tool_executions WHERE id = p_execution_id;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    PERFORM 1 FROM agentpg_runs WHERE id = v_run_id FOR NO KEY UPDATE;
    -- Deleted (with its run or session) while this waited for the run's lock: gone, not decided.
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM agentpg_tool_executions WHERE id = p_execution_id) THEN
        RETURN 'not_found';
    END IF;
    IF p_approve THEN
        UPDATE agentpg_tool_executions
           SET state = 'pending',
               approval_decision = 'approved',
               approval_comment = p_comment,
               approval_decided_by = p_decided_by,
               approval_decided_at = now(),
               approval_original_input = CASE WHEN p_input IS NOT NULL THEN tool_input END,
               tool_input = coalesce(p_input, tool_input),
               scheduled_at = now()
         WHERE id = p_execution_id AND state = 'awaiting_approval';
        IF NOT FOUND THEN
            RETURN 'not_pending';
        END IF;
        PERFORM agentpg_notify('agentpg_tool_pending', json_build_object('run_id', v_run_id)::text);
        RETURN 'approved';
    END IF;
    UPDATE agentpg_tool_executions
       SET state = 'failed',
           is_error = TRUE,
           error_message = 'The tool call was rejected by the approver: ' || coalesce(p_comment, 'no reason given'),
           completed_at = now(),
           approval_decision = 'rejected',
           approval_comment = p_comment,
           approval_decided_by = p_decided_by,
           approval_decided_at = now()
     WHERE id = p_execution_id AND state = 'awaiting_approval';
    IF NOT FOUND THEN
        RETURN 'not_pending';
    END IF;
    RETURN 'rejected';
END
$$;

-- Leader-only (AgentPgOptions.ApprovalTimeout): rejects up to p_limit requests that waited longer than p_timeout with
-- "approval timed out", oldest first. A request decided meanwhile is skipped by the decision's own guard.
-- Every run of the pass is locked before the first rejection (parents first): a rejection appends a live event under its
-- root's head row, and a pass that went on to lock the next run while holding that row deadlocked with a decision holding
-- the next run and waiting for the head row (two child runs of one watched run).
CREATE FUNCTION agentpg_expire_tool_approvals(p_timeout INTERVAL, p_limit INTEGER) RETURNS INTEGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_ids UUID[];
    v_id UUID;
    v_count INTEGER := 0;
BEGIN
    SELECT coalesce(array_agg(e.id ORDER BY e.created_at), '{}') INTO v_ids
      FROM (SELECT id, created_at FROM agentpg_tool_executions
             WHERE state = 'awaiting_approval' AND created_at < now() - p_timeout
             ORDER BY created_at
             LIMIT p_limit) e;
    PERFORM 1 FROM agentpg_runs r
     WHERE r.id IN (SELECT te.run_id FROM agentpg_tool_executions te WHERE te.id = ANY (v_ids))
     ORDER BY r.depth, r.id
       FOR NO KEY UPDATE;
    FOREACH v_id IN ARRAY v_ids
    LOOP
        IF agentpg_decide_tool_approval(v_id, FALSE, NULL, 'approval timed out', NULL) = 'rejected' THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;
    RETURN v_count;
END
$$;

-- ---------------------------------------------------------------------------------------------------------
-- Cancellation and regeneration
-- ---------------------------------------------------------------------------------------------------------

-- Cancels a run and, recursively, its child runs, in one transaction. Returns cancelled = false for an
-- unknown (found = false) or already terminal run. Open tool executions become skipped; if the run's last
-- assistant message has tool_use blocks without results, a user message with a tool_result for each
-- (the real output when the tool had finished, otherwise an is_error "cancelled" result) is written, so the
-- session's history stays valid for the next run. Returns the in-progress batch ids to cancel at the API.
CREATE FUNCTION agentpg_cancel_run(p_run_id UUID)
RETURNS TABLE (found BOOLEAN, cancelled BOOLEAN, batch_ids TEXT[], previous_state agentpg_run_state, child_run_ids UUID[])
LANGUAGE plpgsql ROWS 1 SET search_path FROM CURRENT AS $$
DECLARE
    v_run agentpg_runs%ROWTYPE;
    v_batch_ids TEXT[] := '{}';
    v_child_ids UUID[] := '{}';
    v_child RECORD;
    v_sub RECORD;
    v_last_assistant UUID;
    v_last_assistant_seq BIGINT;
    v_last_assistant_content JSONB;
    v_message_id UUID;
BEGIN
    -- Lock order: the parent run first (its execution is completed by the child's trigger). parent_run_id never changes,
    -- so reading it unlocked is safe; inside a recursive cancel the parent is already held.
    PERFORM 1 FROM agentpg_runs p
     WHERE p.id = (SELECT c.parent_run_id FROM agentpg_runs c WHERE c.id = p_run_id)
       FOR NO KEY UPDATE;
    SELECT * INTO v_run FROM agentpg_runs WHERE id = p_run_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT FALSE, FALSE, '{}'::text[], NULL::agentpg_run_state, '{}'::uuid[];
        RETURN;
    END IF;
    IF v_run.state IN ('completed', 'cancelled', 'failed') THEN
        RETURN QUERY SELECT TRUE, FALSE, '{}'::text[], v_run.state, '{}'::uuid[];
        RETURN;
    END IF;
    -- Then its active descendants, parents first, before anything is written: every write below appends a live event under
    -- the root's head row when the run is watched, and a cancel that held that row while going down to a child deadlocked
    -- with the child's worker, which holds the child (its fence) and appends events too. (Recursive calls find them held.)
    PERFORM 1 FROM agentpg_runs d
     WHERE d.id IN (WITH RECURSIVE tree AS (
                        SELECT c.id FROM agentpg_runs c WHERE c.parent_run_id = p_run_id
                        UNION ALL
                        SELECT c.id FROM agentpg_runs c JOIN tree t ON c.parent_run_id = t.id)
                    SELECT tree.id FROM tree)
       AND d.state NOT IN ('completed', 'cancelled', 'failed')
     ORDER BY d.depth, d.id
       FOR NO KEY UPDATE;

    -- The batches still in flight at Claude, to cancel there. An iteration waiting out Claude's unavailability
    -- (batch_resubmit_at set) has none: its batch ended (errored) and only the resubmission was to come, so its batch is
    -- ended here, the wait with it, and nothing is sent to the API.
    SELECT coalesce(array_agg(DISTINCT i.batch_id), '{}') INTO v_batch_ids
      FROM agentpg_iterations i
     WHERE i.run_id = p_run_id AND i.batch_status IN ('in_progress', 'canceling') AND i.batch_id IS NOT NULL
       AND i.batch_resubmit_at IS NULL;

    UPDATE agentpg_iterations
       SET batch_status = CASE WHEN batch_status = 'in_progress' AND batch_resubmit_at IS NOT NULL THEN 'ended'::agentpg_batch_status
                               WHEN batch_status = 'in_progress' THEN 'canceling'::agentpg_batch_status
                               ELSE batch_status END,
           batch_completed_at = CASE WHEN batch_status = 'in_progress' AND batch_resubmit_at IS NOT NULL
                                     THEN coalesce(batch_completed_at, now()) ELSE batch_completed_at END,
           batch_resubmit_at = NULL,
           error_type = coalesce(error_type, 'cancelled'),
           completed_at = coalesce(completed_at, now())
     WHERE run_id = p_run_id AND completed_at IS NULL;

    UPDATE agentpg_runs
       SET state = 'cancelled',
           error_message = 'Run cancelled by user',
           error_type = 'cancelled',
           claimed_by_instance_id = NULL,
           claimed_at = NULL,
           claim_epoch = claim_epoch + 1
     WHERE id = p_run_id;

    -- Children first recorded, then cancelled recursively (their own dangling tool_use get results too).
    FOR v_child IN
        SELECT te.child_run_id FROM agentpg_tool_executions te
         WHERE te.run_id = p_run_id AND te.child_run_id IS NOT NULL
    LOOP
        SELECT * INTO v_sub FROM agentpg_cancel_run(v_child.child_run_id);
        IF v_sub.cancelled THEN
            v_child_ids := v_child_ids || v_child.child_run_id || v_sub.child_run_ids;
            v_batch_ids := v_batch_ids || v_sub.batch_ids;
        END IF;
    END LOOP;

    UPDATE agentpg_tool_executions
       SET state = 'skipped',
           error_message = coalesce(error_message, 'cancelled'),
           completed_at = now(),
           claimed_by_instance_id = NULL,
           claim_epoch = claim_epoch + 1
     WHERE run_id = p_run_id AND state IN ('pending', 'running', 'awaiting_approval');

    -- Dangling tool_use: the run's last assistant message, if no message of the run follows it.
    SELECT m.id, m.seq, m.content INTO v_last_assistant, v_last_assistant_seq, v_last_assistant_content
      FROM agentpg_messages m
     WHERE m.run_id = p_run_id AND m.role = 'assistant'
     ORDER BY m.seq DESC LIMIT 1;
    IF v_last_assistant IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM agentpg_messages m2 WHERE m2.run_id = p_run_id AND m2.seq > v_last_assistant_seq)
       AND EXISTS (SELECT 1 FROM jsonb_array_elements(v_last_assistant_content) b WHERE b->>'type' = 'tool_use') THEN
        INSERT INTO agentpg_messages (session_id, run_id, role, content)
        SELECT v_run.session_id, v_run.id, 'user',
               jsonb_agg(agentpg_tool_result_block(
                   b.block->>'id',
                   CASE WHEN te.state = 'completed' THEN coalesce(te.tool_output, '')
                        WHEN te.state = 'failed' AND coalesce(te.tool_output, '') <> '' THEN te.tool_output
                        WHEN te.state = 'failed' THEN coalesce(te.error_message, 'Tool execution failed.')
                        ELSE 'cancelled' END,
                   NULL,
                   coalesce(te.state <> 'completed' OR te.is_error, TRUE)) ORDER BY b.n)
          FROM jsonb_array_elements(v_last_assistant_content) WITH ORDINALITY AS b(block, n)
          LEFT JOIN agentpg_tool_executions te
                 ON te.run_id = p_run_id AND te.tool_use_id = b.block->>'id'
                AND te.iteration_id = v_run.current_iteration_id
         WHERE b.block->>'type' = 'tool_use'
        RETURNING id INTO v_message_id;
    END IF;

    RETURN QUERY SELECT TRUE, TRUE, v_batch_ids, v_run.state, v_child_ids;
END
$$;

-- Deletes the messages of one run; returns how many messages were deleted.
CREATE FUNCTION agentpg_delete_run_messages(p_run_id UUID) RETURNS INTEGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_count INTEGER;
BEGIN
    DELETE FROM agentpg_messages WHERE run_id = p_run_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- ---------------------------------------------------------------------------------------------------------
-- Liveness: release and rescue (replaces the reference's fail-on-delete and get_stuck_runs)
-- ---------------------------------------------------------------------------------------------------------

-- Gives runs back to the queue: the one release step of every rescue path (agentpg_release_instance_work for a stopped or
-- stopping instance, agentpg_rescue for a run without progress, agentpg_release_unheld_work for a claim nobody holds).
-- p_run_ids: runs the caller has locked already, in its lock order (parents before the child runs this may fail: failing a
-- child completes its parent's execution, which locks the parent), all held by a claim being released. Their unfinished
-- streaming or batch_submitting iteration is marked abandoned (p_abandoned: why); a batch_pending / batch_processing run
-- keeps its batch and state, released for adoption by a poller; every other run goes back to pending. p_count_rescue:
-- whether this counts against p_max_attempts (a crash, a stuck run) or not (graceful shutdown); a run over the limit
-- fails with error_type rescue_failed and the message p_failed_lead || ' <n> times (the maximum is <m>)' || p_failed_tail.
-- Every claim_epoch is bumped, so the old holder's late writes are refused. The runs' queue rows follow through the state
-- triggers (run, then queue row). Returns the number of runs released and the mode of each run failed here (for the
-- leader's agentpg.runs count).
CREATE FUNCTION agentpg_rescue_runs(p_run_ids UUID[], p_count_rescue BOOLEAN, p_max_attempts INTEGER, p_abandoned TEXT,
                                    p_failed_lead TEXT, p_failed_tail TEXT)
RETURNS TABLE (released INTEGER, failed_run_modes TEXT[])
LANGUAGE plpgsql ROWS 1 SET search_path FROM CURRENT AS $$
BEGIN
    -- Before the runs' state changes: it reads the state the holder left.
    UPDATE agentpg_iterations i
       SET error_type = 'abandoned', error_message = p_abandoned, completed_at = now()
      FROM agentpg_runs r
     WHERE r.id = ANY (p_run_ids)
       AND r.state IN ('streaming', 'batch_submitting')
       AND i.id = r.current_iteration_id AND i.completed_at IS NULL AND i.batch_id IS NULL;

    RETURN QUERY
    WITH released_runs AS (
    UPDATE agentpg_runs
       SET state = CASE
                       WHEN p_count_rescue AND rescue_attempts + 1 > p_max_attempts THEN 'failed'
                       WHEN state IN ('batch_pending', 'batch_processing') THEN state
                       ELSE 'pending'
                   END::agentpg_run_state,
           error_type = CASE WHEN p_count_rescue AND rescue_attempts + 1 > p_max_attempts THEN 'rescue_failed' ELSE error_type END,
           error_message = CASE WHEN p_count_rescue AND rescue_attempts + 1 > p_max_attempts
                                THEN p_failed_lead || ' ' || rescue_attempts || ' times (the maximum is ' || p_max_attempts || ')'
                                     || p_failed_tail
                                ELSE error_message END,
           rescue_attempts = rescue_attempts + CASE WHEN p_count_rescue THEN 1 ELSE 0 END,
           last_rescue_at = CASE WHEN p_count_rescue THEN now() ELSE last_rescue_at END,
           claimed_by_instance_id = NULL,
           claimed_at = NULL,
           claim_epoch = claim_epoch + 1
     WHERE id = ANY (p_run_ids)
     RETURNING state, run_mode
    )
    SELECT count(*)::int, coalesce(array_agg(run_mode::text) FILTER (WHERE state = 'failed'), '{}')
      FROM released_runs;
END
$$;

-- Gives work held by instance p_instance_id back to the queue, bumping every claim_epoch so its late writes
-- are refused:
--   * streaming / batch_submitting runs go back to pending (their unfinished iteration is marked abandoned);
--   * batch_pending / batch_processing runs keep their batch and are released for adoption by a poller;
--   * running tool executions go back to pending; an agent-tool execution whose child run exists keeps
--     running (the child's completion finishes it).
-- p_count_rescue: whether this counts against p_max_attempts (crash) or not (graceful shutdown). Work over the
-- limit is failed with error_type rescue_failed. Returns the number of runs and tool executions touched.
CREATE FUNCTION agentpg_release_instance_work(p_instance_id TEXT, p_count_rescue BOOLEAN, p_max_attempts INTEGER)
RETURNS TABLE (released INTEGER, failed_run_modes TEXT[])
LANGUAGE plpgsql ROWS 1 SET search_path FROM CURRENT AS $$
DECLARE
    v_count INTEGER := 0;
    v_n INTEGER;
    v_failed TEXT[];
    v_locked UUID[];
    v_held UUID[];
BEGIN
    -- The runs the instance holds are locked first, with every run this may write to, and only those are released: the
    -- statements below all work on that one locked set. Read again by each statement, a claim committed in between (an
    -- instance judged dead that was only slow, claiming while the leader releases it) had its run released to pending by
    -- the last statement without its started iteration marked abandoned by the first: an iteration in progress forever,
    -- and a repeat of it that did not know the call was made again. A claim committed after the lock is left to the next
    -- release (the instance delete's trigger, or the rescue of a claim by an instance without a row), which counts it
    -- against the same rescue limit (p_max_attempts; the trigger has the cleanup's in agentpg.rescue_max_attempts).
    -- Lock order: parents before the child runs this may fail (the child's trigger completes the parent's execution), and
    -- the runs of the executions it releases before those executions (failing one continues its run through
    -- agentpg_trg_tools_complete, which locks the run: with the execution locked first, a cancel of the run, which locks
    -- the run and then its executions, deadlocked with it); all in one statement, parents first (depth order).
    -- The instance's runs are found through the queue (active runs only; agentpg_runs has no index on the holder).
    SELECT coalesce(array_agg(l.id), '{}'),
           coalesce(array_agg(l.id) FILTER (WHERE l.claimed_by_instance_id = p_instance_id
                                             AND l.state NOT IN ('completed', 'cancelled', 'failed')), '{}')
      INTO v_locked, v_held
      FROM (SELECT p.id, p.claimed_by_instance_id, p.state FROM agentpg_runs p
             -- One array, so the runs are found by their key (three ORed IN lists scan agentpg_runs whole).
             WHERE p.id = ANY (ARRAY(SELECT c.id FROM agentpg_run_queue q JOIN agentpg_runs c ON c.id = q.run_id
                                      WHERE c.claimed_by_instance_id = p_instance_id
                                        AND c.state NOT IN ('completed', 'cancelled', 'failed'))
                               || ARRAY(SELECT c.parent_run_id FROM agentpg_run_queue q JOIN agentpg_runs c ON c.id = q.run_id
                                         WHERE NOT q.is_root AND c.claimed_by_instance_id = p_instance_id
                                           AND c.parent_run_id IS NOT NULL AND c.state NOT IN ('completed', 'cancelled', 'failed'))
                               || ARRAY(SELECT te.run_id FROM agentpg_tool_executions te
                                         WHERE te.claimed_by_instance_id = p_instance_id AND te.state = 'running'
                                           AND te.child_run_id IS NULL))
             ORDER BY p.depth, p.id
               FOR NO KEY UPDATE) l;
    SELECT w.released, w.failed_run_modes INTO v_n, v_failed
      FROM agentpg_rescue_runs(v_held, p_count_rescue, p_max_attempts, 'Instance ' || p_instance_id || ' released the run',
                               'Run was rescued', '; last holder: instance ' || p_instance_id) w;
    v_count := v_count + v_n;

    UPDATE agentpg_tool_executions
       SET state = CASE WHEN p_count_rescue AND rescue_attempts + 1 > p_max_attempts
                        THEN 'failed' ELSE 'pending' END::agentpg_tool_execution_state,
           is_error = p_count_rescue AND rescue_attempts + 1 > p_max_attempts,
           error_message = CASE WHEN p_count_rescue AND rescue_attempts + 1 > p_max_attempts
                                THEN 'Tool execution was interrupted ' || (rescue_attempts + 1)
                                     || ' times by instances that stopped responding'
                                ELSE error_message END,
           completed_at = CASE WHEN p_count_rescue AND rescue_attempts + 1 > p_max_attempts THEN now() END,
           rescue_attempts = rescue_attempts + CASE WHEN p_count_rescue THEN 1 ELSE 0 END,
           -- An interrupted attempt is not the tool's failure: give it back.
           attempt_count = greatest(attempt_count - 1, 0),
           claimed_by_instance_id = NULL,
           claimed_at = NULL,
           started_at = NULL,
           claim_epoch = claim_epoch + 1
     WHERE claimed_by_instance_id = p_instance_id
       AND state = 'running'
       AND child_run_id IS NULL
       AND run_id = ANY (v_locked);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_count := v_count + v_n;
    RETURN QUERY SELECT v_count, v_failed;
END
$$;

-- Leader-only periodic rescue. Releases the work of instances that stopped heartbeating for p_instance_ttl
-- (a claim by an instance with no row at all is judged by its claim time, but never before the server's
-- start, since a crash empties the UNLOGGED instance table), releases runs whose holder made no progress for
-- p_rescue_timeout, and continues pending_tools runs whose tools are all terminal. Returns what it did.
-- p_leader_id: the calling leader, alive by definition (its lease is checked by the caller), whose work is never
-- released here even when its own heartbeat lags (as agentpg_cleanup_stale_instances never evicts it).
CREATE FUNCTION agentpg_rescue(p_instance_ttl INTERVAL, p_rescue_timeout INTERVAL, p_max_attempts INTEGER,
                               p_leader_id TEXT DEFAULT NULL)
RETURNS TABLE (released_instances TEXT[], released_runs INTEGER, continued_runs INTEGER, failed_run_modes TEXT[])
LANGUAGE plpgsql ROWS 1 SET search_path FROM CURRENT AS $$
DECLARE
    v_dead TEXT[];
    v_instance TEXT;
    v_released INTEGER := 0;
    v_continued INTEGER := 0;
    v_failed TEXT[] := '{}';
    v_run RECORD;
    v_work RECORD;
BEGIN
    SELECT coalesce(array_agg(DISTINCT holder), '{}') INTO v_dead
      FROM (
        -- A pending run has no holder (a claim makes it streaming or batch_submitting, every release clears the holder):
        -- its queue row is left out before the join, so a backlog of pending runs is not probed run by run, and statistics
        -- that say claimed runs are rare do not turn this into a scan of every run (1 594 pages a round with 3 000 pending
        -- and 23 000 runs, against 238: the queue alone).
        SELECT r.claimed_by_instance_id AS holder, r.claimed_at AS claimed_at
          FROM agentpg_run_queue q JOIN agentpg_runs r ON r.id = q.run_id
         WHERE q.state <> 'pending'
           AND r.claimed_by_instance_id IS NOT NULL AND r.state NOT IN ('completed', 'cancelled', 'failed')
        UNION ALL
        SELECT te.claimed_by_instance_id, te.claimed_at
          FROM agentpg_tool_executions te
         WHERE te.claimed_by_instance_id IS NOT NULL AND te.state = 'running'
      ) claims
      LEFT JOIN agentpg_instances i ON i.id = claims.holder
     WHERE coalesce(i.last_heartbeat_at, greatest(claims.claimed_at, pg_postmaster_start_time()))
           < now() - p_instance_ttl
       AND claims.holder IS DISTINCT FROM p_leader_id;

    FOREACH v_instance IN ARRAY v_dead LOOP
        SELECT * INTO v_work FROM agentpg_release_instance_work(v_instance, TRUE, p_max_attempts);
        v_released := v_released + v_work.released;
        v_failed := v_failed || v_work.failed_run_modes;
    END LOOP;

    -- Live holder, no progress: release that run only.
    FOR v_run IN
        SELECT r.id, r.parent_run_id, r.run_mode FROM agentpg_run_queue q JOIN agentpg_runs r ON r.id = q.run_id
         WHERE q.state IN ('streaming', 'batch_submitting')
           AND r.state IN ('streaming', 'batch_submitting')
           AND r.claimed_by_instance_id IS NOT NULL
           AND coalesce(r.last_progress_at, r.claimed_at) < now() - p_rescue_timeout
           FOR NO KEY UPDATE OF r SKIP LOCKED
    LOOP
        -- The child is held already: never wait for its parent (lock order); a busy parent means next round.
        IF v_run.parent_run_id IS NOT NULL THEN
            PERFORM 1 FROM agentpg_runs p WHERE p.id = v_run.parent_run_id FOR NO KEY UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                CONTINUE;
            END IF;
        END IF;
        SELECT * INTO v_work
          FROM agentpg_rescue_runs(ARRAY[v_run.id], TRUE, p_max_attempts, 'No progress for ' || p_rescue_timeout,
                                   'Run made no progress and was rescued', '');
        v_released := v_released + v_work.released;
        v_failed := v_failed || v_work.failed_run_modes;
    END LOOP;

    -- pending_tools runs whose tools are all terminal but whose results were never written.
    FOR v_run IN
        SELECT r.id FROM agentpg_run_queue q JOIN agentpg_runs r ON r.id = q.run_id
         WHERE q.state = 'pending_tools'
           AND r.state = 'pending_tools'
           AND r.current_iteration_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM agentpg_tool_executions te
                            WHERE te.iteration_id = r.current_iteration_id AND te.state IN ('pending', 'running', 'awaiting_approval'))
    LOOP
        IF agentpg_complete_tools_and_continue_run(v_run.id) IS NOT NULL THEN
            v_continued := v_continued + 1;
        END IF;
    END LOOP;

    RETURN QUERY SELECT v_dead, v_released, v_continued, v_failed;
END
$$;

-- Leader-only, last line of defence (review D1): work claimed by a LIVE instance that this instance does not report as
-- in flight. Every heartbeat records the ids of the runs and tool executions its workers are processing (held_work) and
-- a time no later than it read them (held_reported_at: the previous heartbeat's, not moved past a claim in flight at
-- that read). A claim made more than p_bound before that time and missing from it is held by nobody: its
-- worker ended without writing an outcome (for example every write failed for longer than the retry budget), and
-- without this the run would wait forever, since rescue only frees the work of dead instances and streams without
-- progress. Such work is released like a dead instance's (counted as a rescue; failed after p_max_attempts).
-- p_bound covers the time between a claim's commit and the worker's registration of it (normally microseconds); claims
-- newer than the report are never looked at (a wrong release would repeat work the holder is doing, a model call or a
-- tool; its later writes are fenced). Not looked at: batch runs waiting for their batch (batch_pending,
-- batch_processing; the poller holds them, not a worker) and agent-tool executions waiting for their child run (no
-- holder). Cost: one scan of the claimed rows joined to the few instance rows, once per rescue interval. Lock order as
-- everywhere: the run, then its executions.
CREATE FUNCTION agentpg_release_unheld_work(p_bound INTERVAL, p_max_attempts INTEGER)
RETURNS TABLE (released INTEGER, failed_run_modes TEXT[])
LANGUAGE plpgsql ROWS 1 SET search_path FROM CURRENT AS $$
DECLARE
    v_count INTEGER := 0;
    v_failed TEXT[] := '{}';
    v_item RECORD;
    v_work RECORD;
BEGIN
    FOR v_item IN
        SELECT te.id, te.run_id, te.claimed_by_instance_id AS holder, te.claim_epoch
          FROM agentpg_tool_executions te
          JOIN agentpg_instances i ON i.id = te.claimed_by_instance_id
         WHERE te.state = 'running'
           AND te.child_run_id IS NULL
           AND i.held_reported_at IS NOT NULL
           AND te.claimed_at < i.held_reported_at - p_bound
           AND NOT (te.id = ANY (i.held_work))
    LOOP
        PERFORM 1 FROM agentpg_runs WHERE id = v_item.run_id FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        UPDATE agentpg_tool_executions
           SET state = CASE WHEN rescue_attempts + 1 > p_max_attempts THEN 'failed' ELSE 'pending' END::agentpg_tool_execution_state,
               is_error = rescue_attempts + 1 > p_max_attempts,
               error_message = CASE WHEN rescue_attempts + 1 > p_max_attempts
                                    THEN 'Tool execution was interrupted ' || (rescue_attempts + 1)
                                         || ' times; last: instance ' || v_item.holder || ' stopped working on it without recording an outcome'
                                    ELSE error_message END,
               completed_at = CASE WHEN rescue_attempts + 1 > p_max_attempts THEN now() END,
               rescue_attempts = rescue_attempts + 1,
               attempt_count = greatest(attempt_count - 1, 0),
               last_error = 'instance ' || v_item.holder || ' stopped working on it without recording an outcome',
               claimed_by_instance_id = NULL,
               claimed_at = NULL,
               started_at = NULL,
               claim_epoch = claim_epoch + 1
         WHERE id = v_item.id AND state = 'running' AND claimed_by_instance_id = v_item.holder AND claim_epoch = v_item.claim_epoch;
        IF FOUND THEN
            v_count := v_count + 1;
        END IF;
    END LOOP;

    FOR v_item IN
        SELECT r.id, r.parent_run_id, r.claimed_by_instance_id AS holder, r.claim_epoch
          FROM agentpg_run_queue q
          JOIN agentpg_runs r ON r.id = q.run_id
          JOIN agentpg_instances i ON i.id = r.claimed_by_instance_id
         WHERE q.state NOT IN ('batch_pending', 'batch_processing')
           AND r.state NOT IN ('completed', 'cancelled', 'failed', 'batch_pending', 'batch_processing')
           AND i.held_reported_at IS NOT NULL
           AND r.claimed_at < i.held_reported_at - p_bound
           AND NOT (r.id = ANY (i.held_work))
    LOOP
        PERFORM 1 FROM agentpg_runs
         WHERE id = v_item.id AND claimed_by_instance_id = v_item.holder AND claim_epoch = v_item.claim_epoch
           AND state NOT IN ('completed', 'cancelled', 'failed', 'batch_pending', 'batch_processing')
           FOR NO KEY UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        -- Failing a child run completes its parent's execution, which locks the parent: the child is held already, so never
        -- wait for the parent (lock order: parent first); a busy parent means next round (as in agentpg_rescue).
        IF v_item.parent_run_id IS NOT NULL THEN
            PERFORM 1 FROM agentpg_runs p WHERE p.id = v_item.parent_run_id FOR NO KEY UPDATE SKIP LOCKED;
            CONTINUE WHEN NOT FOUND;
        END IF;
        SELECT * INTO v_work
          FROM agentpg_rescue_runs(ARRAY[v_item.id], TRUE, p_max_attempts, 'Instance ' || v_item.holder || ' stopped working on the run',
                                   'Run was rescued', '; last holder: instance ' || v_item.holder || ', which stopped working on it');
        v_count := v_count + v_work.released;
        v_failed := v_failed || v_work.failed_run_modes;
    END LOOP;
    RETURN QUERY SELECT v_count, v_failed;
END
$$;

-- Leader-only cleanup: removes instances that stopped heartbeating for p_instance_ttl, releasing their work
-- with the rescue limit first. The delete trigger below releases what was claimed after that release locked the runs
-- (an instance judged dead that was only slow), with the same limit: the cleanup hands it over in a transaction-local
-- setting (agentpg.rescue_max_attempts), reset before it returns. The trigger hands back the modes of the runs it failed
-- (agentpg.released_failed_run_modes), returned with the cleanup's own, so the leader counts every run failed here.
CREATE FUNCTION agentpg_cleanup_stale_instances(p_leader_id TEXT, p_instance_ttl INTERVAL, p_max_attempts INTEGER)
RETURNS TABLE (instance_id TEXT, failed_run_modes TEXT[])
LANGUAGE plpgsql ROWS 5 SET search_path FROM CURRENT AS $$
DECLARE
    v_instance TEXT;
BEGIN
    PERFORM set_config('agentpg.rescue_max_attempts', p_max_attempts::text, true);
    FOR v_instance IN
        SELECT i.id FROM agentpg_instances i
         WHERE i.last_heartbeat_at < now() - p_instance_ttl AND i.id <> p_leader_id
           FOR UPDATE SKIP LOCKED
    LOOP
        instance_id := v_instance;
        SELECT w.failed_run_modes INTO failed_run_modes FROM agentpg_release_instance_work(v_instance, TRUE, p_max_attempts) w;
        PERFORM set_config('agentpg.released_failed_run_modes', '', true);
        DELETE FROM agentpg_instances i WHERE i.id = v_instance;
        failed_run_modes := failed_run_modes
                            || coalesce(nullif(current_setting('agentpg.released_failed_run_modes', true), '')::text[], '{}');
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('agentpg.rescue_max_attempts', '', true);
    PERFORM set_config('agentpg.released_failed_run_modes', '', true);
END
$$;

-- An instance row is deleted (graceful stop, the leader evicting a stale instance, or anyone by hand): release what it
-- still holds instead of failing it (reference defect 6). Graceful stop and cleanup release first,
-- so this catches a claim committed after their release locked the instance's runs, and deletions made by hand. The
-- release is a crash's, counted as a rescue. Inside the leader's cleanup it is also counted against the cleanup's limit
-- (RunRescue.MaxAttempts, in the setting agentpg.rescue_max_attempts), so a run over it fails with rescue_failed here
-- exactly as in the cleanup's own release, and the modes of the runs it failed are handed back to the cleanup
-- (agentpg.released_failed_run_modes) for the leader's count of failed runs. Elsewhere (a deletion by hand) the database
-- does not know the client's limit: the rescue is counted only, and a run over the limit fails at its next release by the
-- leader. No table is read for the limit, so an instance's deregistration never depends on the lease table.
CREATE FUNCTION agentpg_cleanup_orphaned_work() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_limit INTEGER := nullif(current_setting('agentpg.rescue_max_attempts', true), '')::int;
    v_failed TEXT[];
BEGIN
    SELECT w.failed_run_modes INTO v_failed FROM agentpg_release_instance_work(OLD.id, TRUE, coalesce(v_limit, 2147483647)) w;
    IF v_limit IS NOT NULL AND cardinality(v_failed) > 0 THEN
        PERFORM set_config('agentpg.released_failed_run_modes',
                           (coalesce(nullif(current_setting('agentpg.released_failed_run_modes', true), '')::text[], '{}') || v_failed)::text,
                           true);
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER agentpg_trg_cleanup_orphaned_work BEFORE DELETE ON agentpg_instances
    FOR EACH ROW EXECUTE FUNCTION agentpg_cleanup_orphaned_work();

-- Drops a tool definition nobody registers any more and no execution references.
CREATE FUNCTION agentpg_cleanup_orphaned_tools() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM agentpg_tools t
     WHERE t.name = OLD.tool_name
       AND NOT EXISTS (SELECT 1 FROM agentpg_instance_tools it WHERE it.tool_name = OLD.tool_name)
       AND NOT EXISTS (SELECT 1 FROM agentpg_tool_executions te WHERE te.tool_name = OLD.tool_name);
    RETURN NULL;
END
$$;
CREATE TRIGGER agentpg_trg_cleanup_orphaned_tools AFTER DELETE ON agentpg_instance_tools
    FOR EACH ROW EXECUTE FUNCTION agentpg_cleanup_orphaned_tools();

-- Batch iterations this instance must poll: its own runs' in-progress batches, plus orphaned ones
-- (batch runs released by a rescue), least recently polled first.
-- Planned as agentpg_claim_candidates is: the one plan left walks agentpg_idx_iterations_polling in order and probes each
-- iteration's run by its key. The run table has no index naming its state; statistics that said batch runs were rare (a
-- history of finished runs, the iterations analyzed after a burst of batches but not the runs yet) made the planner scan
-- every run and probe each one's iterations, on every poll (10 470 pages a poll with 3 000 batches in progress and 23 000
-- runs, against 37).
CREATE FUNCTION agentpg_get_iterations_for_poll(p_instance_id TEXT, p_poll_interval INTERVAL, p_max_count INTEGER)
RETURNS SETOF agentpg_iterations
LANGUAGE plpgsql ROWS 5 SET search_path FROM CURRENT SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off
                         SET enable_indexscan = on SET enable_material = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    RETURN QUERY
    SELECT i.*
      FROM agentpg_iterations i
      JOIN agentpg_runs r ON r.id = i.run_id
     WHERE i.batch_status = 'in_progress'
       AND r.state IN ('batch_pending', 'batch_processing')
       AND (r.claimed_by_instance_id = p_instance_id OR r.claimed_by_instance_id IS NULL)
       -- Due for a poll, or (waiting out Claude's unavailability: nothing to poll) for its resubmission.
       AND CASE WHEN i.batch_resubmit_at IS NULL
                THEN i.batch_last_poll_at IS NULL OR i.batch_last_poll_at < now() - p_poll_interval
                ELSE i.batch_resubmit_at <= now() END
     ORDER BY i.batch_last_poll_at NULLS FIRST
     LIMIT p_max_count;
END
$$;

INSERT INTO agentpg_migrations (version, name) VALUES (1, 'initial');

-- ---------------------------------------------------------------------------------------------------------
-- Live run events (WatchRunAsync; docs/streaming.md, src/AgentPg/Runs/Events/README.md)
-- ---------------------------------------------------------------------------------------------------------
-- Events are recorded only for root runs somebody watches (or watched): the first watcher marks the root run's row
-- (agentpg_mark_run_watched, a transaction of its own), then creates the root's head row and, in the same transaction,
-- back-fills the events of what already happened from the durable tables (agentpg_watch_run). From then on the triggers
-- below append an event for every state change, iteration, message and tool call of the root run's hierarchy, and the
-- streaming instance appends coalesced text deltas.
-- For a root run nobody watches, nothing is written, and a transaction learns "unwatched" the cheapest way it can:
-- * A transaction that holds the root run's row locked (the claim, the run fences, any UPDATE of the row) reads the
--   row's watch marker: unset, no watcher can start before this transaction commits (marking the row waits for the
--   lock). No lock, no probe, no PL/pgSQL call: the run's own state-change trigger tests the marker in its condition,
--   and the claim and the fences remember the root for the transaction's other triggers (agentpg_run_event_skip).
-- * Any other transaction (a tool's completion, a child run's writes) takes the root's shared advisory lock and probes
--   agentpg_run_event_heads once, and remembers the root likewise.
-- The transaction's later triggers for a remembered root are skipped by their WHEN conditions
-- (agentpg_run_event_unwatched). A first watcher marks the row in a transaction of its own and only then takes the
-- exclusive advisory lock: never holding one while waiting for the other, it cannot deadlock with writers that take the
-- row lock and the advisory lock in either order (a child run's final write locks its parent's row and then appends; a
-- tool's completion appends and then the tools-complete trigger updates its run's row).
-- Logged tables: written only for watched runs, and a resuming watcher must find the same sequences after a server
-- restart. The leader deletes them RunEventRetention after the root run finished (messages stay forever).

CREATE TABLE agentpg_run_event_heads (
    root_run_id    UUID PRIMARY KEY REFERENCES agentpg_runs (id) ON DELETE CASCADE,
    -- The sequence of the root run's latest event. Its row lock orders concurrent appends: sequence order is commit order.
    last_sequence  BIGINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE agentpg_run_events (
    root_run_id  UUID NOT NULL REFERENCES agentpg_run_event_heads (root_run_id) ON DELETE CASCADE,
    sequence     BIGINT NOT NULL,
    run_id       UUID NOT NULL,
    -- state, finished, iteration, text, thinking, tool_input, model_unavailable, message, tool_started, tool_completed,
    -- approval_requested
    kind         TEXT NOT NULL,
    -- The row the event is about (message, tool execution, iteration), read when the event is delivered.
    ref_id       UUID,
    data         JSONB NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (root_run_id, sequence),
    CONSTRAINT run_event_data_object CHECK (jsonb_typeof(data) = 'object')
);

-- The advisory lock that orders a first watcher's back-fill against the triggers' appends (see agentpg_watch_run).
CREATE FUNCTION agentpg_run_event_lock_key(p_root_run_id UUID) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('agentpg_run_events:' || p_root_run_id::text, 0)
$$;

-- Whether the root run p_root_run_id is known unwatched for the rest of this transaction: a transaction-local setting
-- lists the roots this transaction found without a head while holding their shared advisory lock. The lock is held until
-- the transaction ends, and agentpg_watch_run creates a head only under the exclusive lock, so no head can appear for such
-- a root before this transaction commits: its later events can be skipped without the lock and the probe. (A rolled-back
-- savepoint releases the lock and reverts the setting together.) A uuid's text contains no comma, so a match is a whole
-- entry. The triggers' WHEN conditions spell the expression out (see agentpg_notify_deferred for why).
CREATE FUNCTION agentpg_run_event_unwatched(p_root_run_id UUID) RETURNS BOOLEAN
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(strpos(current_setting('agentpg.unwatched_roots', true), p_root_run_id::text), 0) > 0
$$;

-- Remembers a root run as unwatched for the rest of this transaction (see agentpg_run_event_unwatched). Only for a
-- transaction holding what a first watcher must wait for: the root's shared advisory lock, or the root run's row locked
-- with its watch marker unset. Bounded, so a transaction touching thousands of roots (a rescue) does not make every
-- later check scan a long string: past ~2 000 characters (~50 roots) nothing more is remembered and later events probe.
-- A single expression of built-in functions, so the planner inlines it into the statements that call it.
CREATE FUNCTION agentpg_run_event_skip(p_root_run_id UUID) RETURNS BOOLEAN
LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN length(coalesce(current_setting('agentpg.unwatched_roots', true), '')) >= 2000 THEN FALSE
                ELSE set_config('agentpg.unwatched_roots',
                                coalesce(current_setting('agentpg.unwatched_roots', true), '') || p_root_run_id::text || ',', true) IS NOT NULL
           END
$$;

-- Appends one event when the root run is watched. The shared advisory lock makes a concurrent first watcher either see
-- this transaction's rows in its back-fill (it waited for our commit) or be seen by the head lookup (we waited for its).
CREATE FUNCTION agentpg_append_run_event(p_root_run_id UUID, p_run_id UUID, p_kind TEXT, p_ref_id UUID, p_data JSONB)
RETURNS VOID
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_sequence BIGINT;
BEGIN
    IF p_root_run_id IS NULL OR agentpg_run_event_unwatched(p_root_run_id) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(agentpg_run_event_lock_key(p_root_run_id));
    UPDATE agentpg_run_event_heads SET last_sequence = last_sequence + 1
     WHERE root_run_id = p_root_run_id
    RETURNING last_sequence INTO v_sequence;
    IF NOT FOUND THEN
        PERFORM agentpg_run_event_skip(p_root_run_id);
        RETURN;
    END IF;
    INSERT INTO agentpg_run_events (root_run_id, sequence, run_id, kind, ref_id, data)
    VALUES (p_root_run_id, v_sequence, p_run_id, p_kind, p_ref_id, p_data);
    -- Identical notifications of one transaction are folded into one.
    PERFORM pg_notify(agentpg_channel('agentpg_run_event'), json_build_object('run_id', p_root_run_id)::text);
END
$$;

CREATE FUNCTION agentpg_run_event_on_run() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM agentpg_append_run_event(NEW.root_run_id, NEW.id, 'state', NULL,
        jsonb_build_object('state', NEW.state, 'previous_state', CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END));
    IF NEW.state IN ('completed', 'cancelled', 'failed') THEN
        PERFORM agentpg_append_run_event(NEW.root_run_id, NEW.id, 'finished', NULL, jsonb_build_object('state', NEW.state));
    END IF;
    RETURN NULL;
END
$$;
-- Named to fire before agentpg_trg_child_run_complete (same-event triggers fire in name order), so a child run's
-- finish comes before the parent's tool completion and continuation in the stream. A root run's row is locked by the
-- UPDATE that fires this: its watch marker, unset, says nobody watches it (see agentpg_runs.watched).
CREATE TRIGGER agentpg_trg_a_run_event_state AFTER UPDATE OF state ON agentpg_runs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state AND (NEW.parent_run_id IS NOT NULL OR NEW.watched)
                       AND NOT coalesce(strpos(current_setting('agentpg.unwatched_roots', true), NEW.root_run_id::text), 0) > 0)
    EXECUTE FUNCTION agentpg_run_event_on_run();
-- A root run is never watched before it exists; a child run appears in its root's stream when it is created.
CREATE TRIGGER agentpg_trg_run_event_created AFTER INSERT ON agentpg_runs
    FOR EACH ROW WHEN (NEW.parent_run_id IS NOT NULL) EXECUTE FUNCTION agentpg_run_event_on_run();

CREATE FUNCTION agentpg_run_event_on_iteration() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM agentpg_append_run_event((SELECT r.root_run_id FROM agentpg_runs r WHERE r.id = NEW.run_id), NEW.run_id, 'iteration', NEW.id,
        jsonb_build_object('iteration_number', NEW.iteration_number));
    RETURN NULL;
END
$$;
-- A root run's id is its root's: a transaction that found it unwatched skips the call (a child run's goes through the lookup).
CREATE TRIGGER agentpg_trg_run_event_iteration AFTER INSERT ON agentpg_iterations
    FOR EACH ROW WHEN (NOT coalesce(strpos(current_setting('agentpg.unwatched_roots', true), NEW.run_id::text), 0) > 0)
    EXECUTE FUNCTION agentpg_run_event_on_iteration();

CREATE FUNCTION agentpg_run_event_on_message() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM agentpg_append_run_event((SELECT r.root_run_id FROM agentpg_runs r WHERE r.id = NEW.run_id), NEW.run_id, 'message', NEW.id, '{}');
    RETURN NULL;
END
$$;
CREATE TRIGGER agentpg_trg_run_event_message AFTER INSERT ON agentpg_messages
    FOR EACH ROW WHEN (NEW.run_id IS NOT NULL AND NOT coalesce(strpos(current_setting('agentpg.unwatched_roots', true), NEW.run_id::text), 0) > 0)
    EXECUTE FUNCTION agentpg_run_event_on_message();

-- A tool call starts when its execution starts running (an agent tool: when its child run exists) and completes when
-- its execution is terminal (an execution can also be created terminal: invalid input, unknown tool; or end without
-- starting: a call rejected while it awaited approval). A call created awaiting approval is an approval request.
CREATE FUNCTION agentpg_run_event_on_tool() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_root UUID := (SELECT r.root_run_id FROM agentpg_runs r WHERE r.id = NEW.run_id);
    v_old_state agentpg_tool_execution_state := CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END;
    v_old_child UUID := CASE WHEN TG_OP = 'UPDATE' THEN OLD.child_run_id END;
BEGIN
    IF (NOT NEW.is_agent_tool AND NEW.state = 'running' AND v_old_state IS DISTINCT FROM 'running')
       OR (NEW.is_agent_tool AND NEW.child_run_id IS NOT NULL AND v_old_child IS NULL) THEN
        PERFORM agentpg_append_run_event(v_root, NEW.run_id, 'tool_started', NEW.id, jsonb_build_object('child_run_id', NEW.child_run_id));
    END IF;
    IF NEW.state = 'awaiting_approval' AND v_old_state IS DISTINCT FROM 'awaiting_approval' THEN
        PERFORM agentpg_append_run_event(v_root, NEW.run_id, 'approval_requested', NEW.id, '{}');
    END IF;
    IF NEW.state IN ('completed', 'failed', 'skipped') AND (v_old_state IS NULL OR v_old_state IN ('pending', 'running', 'awaiting_approval')) THEN
        PERFORM agentpg_append_run_event(v_root, NEW.run_id, 'tool_completed', NEW.id, '{}');
    END IF;
    RETURN NULL;
END
$$;
-- A root run's id is its root's: a transaction that found it unwatched (the claim, the fences) skips the call.
CREATE TRIGGER agentpg_trg_run_event_tool AFTER UPDATE OF state, child_run_id ON agentpg_tool_executions
    FOR EACH ROW WHEN ((OLD.state IS DISTINCT FROM NEW.state OR OLD.child_run_id IS DISTINCT FROM NEW.child_run_id)
                       AND NOT coalesce(strpos(current_setting('agentpg.unwatched_roots', true), NEW.run_id::text), 0) > 0)
    EXECUTE FUNCTION agentpg_run_event_on_tool();
CREATE TRIGGER agentpg_trg_run_event_tool_created AFTER INSERT ON agentpg_tool_executions
    FOR EACH ROW WHEN (NEW.state <> 'pending' AND NOT coalesce(strpos(current_setting('agentpg.unwatched_roots', true), NEW.run_id::text), 0) > 0)
    EXECUTE FUNCTION agentpg_run_event_on_tool();

-- The first step of watching p_run_id's hierarchy, in a transaction of its own before agentpg_watch_run: sets the root
-- run's watch marker (see agentpg_runs.watched). The UPDATE waits for the transactions holding the row, which skipped
-- their events on the unset marker; agentpg_watch_run's back-fill then sees what they wrote. Returns the root run's id,
-- or NULL when the run does not exist. Holding the row lock for a moment can make a concurrent claim skip a pending
-- root run: it is announced again as claimable.
CREATE FUNCTION agentpg_mark_run_watched(p_run_id UUID) RETURNS UUID
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_root UUID;
    v_state agentpg_run_state;
    v_mode agentpg_run_mode;
BEGIN
    SELECT coalesce(root_run_id, id) INTO v_root FROM agentpg_runs WHERE id = p_run_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE agentpg_runs SET watched = TRUE WHERE id = v_root AND NOT watched
    RETURNING state, run_mode INTO v_state, v_mode;
    IF v_state = 'pending' THEN
        PERFORM agentpg_notify('agentpg_run_state',
            json_build_object('run_id', v_root, 'state', v_state, 'previous_state', v_state, 'run_mode', v_mode)::text);
    END IF;
    RETURN v_root;
END
$$;

-- Starts watching the hierarchy of p_run_id's root run, marked by agentpg_mark_run_watched in an earlier transaction;
-- returns the root run's id, or NULL when the run does not exist.
-- The first watcher creates the head and back-fills, in order, the events of what the durable tables already hold
-- (coalesced: a run's past states are its creation and its current state; text is in the stored messages), and
-- announces the root on agentpg_run_watch so the instance streaming it starts publishing deltas.
CREATE FUNCTION agentpg_watch_run(p_run_id UUID) RETURNS UUID
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_root UUID;
    v_count BIGINT;
BEGIN
    SELECT coalesce(root_run_id, id) INTO v_root FROM agentpg_runs WHERE id = p_run_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT (SELECT r.watched FROM agentpg_runs r WHERE r.id = v_root) THEN
        -- Without the marker, transactions holding the root's row would skip events after the head exists.
        RAISE EXCEPTION 'run % is not marked watched: call agentpg_mark_run_watched in a transaction of its own first', v_root;
    END IF;
    IF EXISTS (SELECT 1 FROM agentpg_run_event_heads WHERE root_run_id = v_root) THEN
        RETURN v_root;
    END IF;
    PERFORM pg_advisory_xact_lock(agentpg_run_event_lock_key(v_root));
    INSERT INTO agentpg_run_event_heads (root_run_id) VALUES (v_root) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN v_root;
    END IF;

    WITH RECURSIVE tree AS (
        SELECT r.* FROM agentpg_runs r WHERE r.id = v_root
        UNION ALL
        SELECT c.* FROM agentpg_runs c JOIN tree t ON c.parent_run_id = t.id
    ),
    past (run_id, kind, ref_id, data, at, ord, tie) AS (
        SELECT t.id, 'state', NULL::uuid, jsonb_build_object('state', 'pending', 'previous_state', NULL), t.created_at, 0, t.seq
          FROM tree t
        UNION ALL
        SELECT t.id, 'state', NULL, jsonb_build_object('state', t.state, 'previous_state', t.previous_state),
               coalesce(t.finalized_at, t.claimed_at, t.started_at, t.created_at), CASE WHEN t.finalized_at IS NULL THEN 1 ELSE 6 END, t.seq
          FROM tree t WHERE t.state <> 'pending'
        UNION ALL
        SELECT t.id, 'finished', NULL, jsonb_build_object('state', t.state), t.finalized_at, 7, t.seq
          FROM tree t WHERE t.finalized_at IS NOT NULL
        UNION ALL
        SELECT i.run_id, 'iteration', i.id, jsonb_build_object('iteration_number', i.iteration_number), i.created_at, 2, i.iteration_number
          FROM agentpg_iterations i JOIN tree t ON t.id = i.run_id
        UNION ALL
        SELECT m.run_id, 'message', m.id, '{}'::jsonb, m.created_at, 3, m.seq
          FROM agentpg_messages m JOIN tree t ON t.id = m.run_id
        UNION ALL
        SELECT te.run_id, 'tool_started', te.id, jsonb_build_object('child_run_id', te.child_run_id), coalesce(te.started_at, te.created_at), 4, te.position
          FROM agentpg_tool_executions te JOIN tree t ON t.id = te.run_id
         -- The rule of agentpg_run_event_on_tool: an agent tool starts when its child run exists, not at its claim (a watch
         -- between the two would otherwise get the start twice, back-filled and then recorded).
         WHERE (NOT te.is_agent_tool AND te.started_at IS NOT NULL) OR (te.is_agent_tool AND te.child_run_id IS NOT NULL)
        UNION ALL
        SELECT te.run_id, 'approval_requested', te.id, '{}'::jsonb, te.created_at, 4, te.position
          FROM agentpg_tool_executions te JOIN tree t ON t.id = te.run_id
         WHERE te.approval_required
        UNION ALL
        SELECT te.run_id, 'tool_completed', te.id, '{}'::jsonb, te.completed_at, 5, te.position
          FROM agentpg_tool_executions te JOIN tree t ON t.id = te.run_id
         WHERE te.state IN ('completed', 'failed', 'skipped')
    )
    INSERT INTO agentpg_run_events (root_run_id, sequence, run_id, kind, ref_id, data, created_at)
    SELECT v_root, row_number() OVER (ORDER BY p.at, p.ord, p.tie), p.run_id, p.kind, p.ref_id, p.data, p.at
      FROM past p;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    UPDATE agentpg_run_event_heads SET last_sequence = v_count WHERE root_run_id = v_root;
    -- Not for a finished root (a replay): its finish was announced before, and the instances would keep it watched for good.
    IF (SELECT r.finalized_at IS NULL FROM agentpg_runs r WHERE r.id = v_root) THEN
        PERFORM pg_notify(agentpg_channel('agentpg_run_watch'), json_build_object('run_id', v_root)::text);
    END IF;
    RETURN v_root;
END
$$;

-- Text, thinking and tool-input deltas of a streaming iteration, coalesced by the streaming instance; written only while the
-- instance still holds the run (p_instance_id, p_claim_epoch) and the root run is watched. Returns whether it wrote.
CREATE FUNCTION agentpg_append_run_deltas(p_run_id UUID, p_instance_id TEXT, p_claim_epoch BIGINT, p_iteration_number INTEGER,
                                          p_kinds TEXT[], p_block_indexes INTEGER[], p_texts TEXT[])
RETURNS BOOLEAN
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_root UUID;
    v_count INTEGER := cardinality(p_texts);
    v_last BIGINT;
BEGIN
    SELECT root_run_id INTO v_root FROM agentpg_runs
     WHERE id = p_run_id AND claimed_by_instance_id = p_instance_id AND claim_epoch = p_claim_epoch;
    IF NOT FOUND OR v_count = 0 THEN
        RETURN FALSE;
    END IF;
    UPDATE agentpg_run_event_heads SET last_sequence = last_sequence + v_count
     WHERE root_run_id = v_root
    RETURNING last_sequence INTO v_last;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    INSERT INTO agentpg_run_events (root_run_id, sequence, run_id, kind, data)
    SELECT v_root, v_last - v_count + d.n, p_run_id, d.kind,
           jsonb_build_object('iteration_number', p_iteration_number, 'block_index', d.block_index, 'text', d.text)
      FROM unnest(p_kinds, p_block_indexes, p_texts) WITH ORDINALITY AS d(kind, block_index, text, n);
    PERFORM pg_notify(agentpg_channel('agentpg_run_event'), json_build_object('run_id', v_root)::text);
    RETURN TRUE;
END
$$;
