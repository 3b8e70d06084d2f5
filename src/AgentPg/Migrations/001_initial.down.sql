-- Reverts 001_initial.up.sql: drops every object it created, in dependency order, in the first schema of
-- the search_path (see the header of the up file). Other objects in that schema are left alone.

DROP TRIGGER IF EXISTS agentpg_trg_run_event_tool_created ON agentpg_tool_executions;
DROP TRIGGER IF EXISTS agentpg_trg_run_event_tool ON agentpg_tool_executions;
DROP TRIGGER IF EXISTS agentpg_trg_run_event_message ON agentpg_messages;
DROP TRIGGER IF EXISTS agentpg_trg_messages_unlink_iterations ON agentpg_messages;
DROP TRIGGER IF EXISTS agentpg_trg_run_event_iteration ON agentpg_iterations;
DROP TRIGGER IF EXISTS agentpg_trg_run_event_created ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_a_run_event_state ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_cleanup_orphaned_tools ON agentpg_instance_tools;
DROP TRIGGER IF EXISTS agentpg_trg_cleanup_orphaned_work ON agentpg_instances;
DROP TRIGGER IF EXISTS agentpg_trg_tool_created ON agentpg_tool_executions;
DROP TRIGGER IF EXISTS agentpg_trg_tools_complete ON agentpg_tool_executions;
DROP TRIGGER IF EXISTS agentpg_trg_child_run_complete ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_run_state_change ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_run_created ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_run_queue_deleted ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_run_queue_state ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_run_queue_insert ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_run_before_insert ON agentpg_runs;
DROP TRIGGER IF EXISTS agentpg_trg_run_before_update ON agentpg_runs;

DROP FUNCTION IF EXISTS agentpg_append_run_deltas(UUID, TEXT, BIGINT, INTEGER, TEXT[], INTEGER[], TEXT[]);
DROP FUNCTION IF EXISTS agentpg_watch_run(UUID);
DROP FUNCTION IF EXISTS agentpg_mark_run_watched(UUID);
DROP FUNCTION IF EXISTS agentpg_run_event_on_tool();
DROP FUNCTION IF EXISTS agentpg_run_event_on_message();
DROP FUNCTION IF EXISTS agentpg_run_event_on_iteration();
DROP FUNCTION IF EXISTS agentpg_run_event_on_run();
DROP FUNCTION IF EXISTS agentpg_append_run_event(UUID, UUID, TEXT, UUID, JSONB);
DROP FUNCTION IF EXISTS agentpg_run_event_skip(UUID);
DROP FUNCTION IF EXISTS agentpg_run_event_lock_key(UUID);
DROP FUNCTION IF EXISTS agentpg_run_event_unwatched(UUID);
DROP FUNCTION IF EXISTS agentpg_get_iterations_for_poll(TEXT, INTERVAL, INTEGER);
DROP FUNCTION IF EXISTS agentpg_cleanup_orphaned_tools();
DROP FUNCTION IF EXISTS agentpg_cleanup_orphaned_work();
DROP FUNCTION IF EXISTS agentpg_cleanup_stale_instances(TEXT, INTERVAL, INTEGER);
DROP FUNCTION IF EXISTS agentpg_rescue(INTERVAL, INTERVAL, INTEGER, TEXT);
DROP FUNCTION IF EXISTS agentpg_release_unheld_work(INTERVAL, INTEGER);
DROP FUNCTION IF EXISTS agentpg_release_instance_work(TEXT, BOOLEAN, INTEGER);
DROP FUNCTION IF EXISTS agentpg_rescue_runs(UUID[], BOOLEAN, INTEGER, TEXT, TEXT, TEXT);
DROP FUNCTION IF EXISTS agentpg_delete_run_messages(UUID);
DROP FUNCTION IF EXISTS agentpg_unlink_deleted_messages();
DROP FUNCTION IF EXISTS agentpg_cancel_run(UUID);
DROP FUNCTION IF EXISTS agentpg_expire_tool_approvals(INTERVAL, INTEGER);
DROP FUNCTION IF EXISTS agentpg_decide_tool_approval(UUID, BOOLEAN, JSONB, TEXT, TEXT);
DROP FUNCTION IF EXISTS agentpg_create_tool_executions_and_update_run(JSONB, UUID, agentpg_run_state, JSONB, TEXT, BIGINT);
DROP FUNCTION IF EXISTS agentpg_fence_tool_execution(UUID, TEXT, BIGINT);
DROP FUNCTION IF EXISTS agentpg_fence_run(UUID, TEXT, BIGINT, UUID);
DROP FUNCTION IF EXISTS agentpg_claim_lost(UUID, TEXT, BIGINT);
DROP FUNCTION IF EXISTS agentpg_claim_tool_executions(TEXT, INTEGER);
DROP FUNCTION IF EXISTS agentpg_claim_runs(TEXT, INTEGER, agentpg_run_mode);
DROP FUNCTION IF EXISTS agentpg_claim_candidates(TEXT, INTEGER, agentpg_run_mode);
DROP FUNCTION IF EXISTS agentpg_notify_tool_created();
DROP FUNCTION IF EXISTS agentpg_tool_execution_after_update();
DROP FUNCTION IF EXISTS agentpg_complete_tools_and_continue_run(UUID);
DROP FUNCTION IF EXISTS agentpg_tool_result_block(TEXT, TEXT, JSONB, BOOLEAN);
DROP FUNCTION IF EXISTS agentpg_handle_child_run_complete();
DROP FUNCTION IF EXISTS agentpg_notify_run_state_change();
DROP FUNCTION IF EXISTS agentpg_next_root_run_mode(UUID, UUID, UUID);
DROP FUNCTION IF EXISTS agentpg_run_queue_sync();
DROP FUNCTION IF EXISTS agentpg_notify_run_created();
DROP FUNCTION IF EXISTS agentpg_run_before_insert();
DROP FUNCTION IF EXISTS agentpg_run_before_update();

ALTER TABLE IF EXISTS agentpg_runs DROP CONSTRAINT IF EXISTS agentpg_fk_runs_parent_tool_execution;

DROP TABLE IF EXISTS agentpg_run_events;
DROP TABLE IF EXISTS agentpg_run_event_heads;
DROP TABLE IF EXISTS agentpg_leader;
DROP TABLE IF EXISTS agentpg_instance_tools;
DROP TABLE IF EXISTS agentpg_instances;
DROP TABLE IF EXISTS agentpg_message_archive;
DROP TABLE IF EXISTS agentpg_memory_files;
DROP TABLE IF EXISTS agentpg_memory_stores;
DROP TABLE IF EXISTS agentpg_compaction_events;
DROP TABLE IF EXISTS agentpg_tool_executions;
DROP TABLE IF EXISTS agentpg_iterations;
DROP TABLE IF EXISTS agentpg_messages;
DROP TABLE IF EXISTS agentpg_run_queue;
DROP TABLE IF EXISTS agentpg_runs;
DROP TABLE IF EXISTS agentpg_tools;
DROP TABLE IF EXISTS agentpg_agents;
DROP TABLE IF EXISTS agentpg_sessions;

DROP FUNCTION IF EXISTS agentpg_notify(TEXT, TEXT);
DROP FUNCTION IF EXISTS agentpg_notify_deferred(TEXT);
DROP FUNCTION IF EXISTS agentpg_channel(TEXT);

DROP TYPE IF EXISTS agentpg_message_role;
DROP TYPE IF EXISTS agentpg_tool_execution_state;
DROP TYPE IF EXISTS agentpg_batch_status;
DROP TYPE IF EXISTS agentpg_run_state;
DROP TYPE IF EXISTS agentpg_run_mode;

DROP TABLE IF EXISTS agentpg_migrations;
