using System.Globalization;
using System.Text;
using Npgsql;

namespace AgentPg.Soak;

/// <summary>What the soak verifies from the database once the load has stopped and the work has settled.</summary>
internal sealed class SoakChecks(NpgsqlDataSource dataSource, SoakLog log)
{
    private const string Terminal = "('completed', 'cancelled', 'failed')";

    public int FailedChecks { get; private set; }

    /// <summary>Waits until every run and tool execution is terminal, or the deadline passes.</summary>
    public async Task<bool> SettleAsync(TimeSpan deadline)
    {
        var until = TimeProvider.System.GetUtcNow() + deadline;
        var lastReport = TimeProvider.System.GetUtcNow();
        while (true)
        {
            try
            {
                var open = await ScalarAsync<long>(
                    $"SELECT (SELECT count(*) FROM agentpg_runs WHERE state NOT IN {Terminal}) + (SELECT count(*) FROM agentpg_tool_executions WHERE state IN ('pending', 'running'))");
                if (open == 0)
                {
                    return true;
                }

                if (TimeProvider.System.GetUtcNow() - lastReport > TimeSpan.FromSeconds(10))
                {
                    lastReport = TimeProvider.System.GetUtcNow();
                    log.Info($"settling: {open} runs and tool executions not final yet");
                }
            }
            catch (NpgsqlException ex)
            {
                log.Info($"settle query failed: {ex.Message}");
            }

            if (TimeProvider.System.GetUtcNow() > until)
            {
                return false;
            }

            await Task.Delay(TimeSpan.FromSeconds(1));
        }
    }

    public async Task ReportAsync(IReadOnlyCollection<Intent> intents, Chaos chaos, WorkerPool workers, Producer producer, SoakSettings settings, TimeSpan loadDuration)
    {
        var acknowledged = intents.Where(i => i.RunId is not null).ToList();
        var ids = acknowledged.Select(i => i.RunId!.Value).ToArray();
        await using (var batch = dataSource.CreateBatch())
        {
            var insert = new NpgsqlBatchCommand(
                "INSERT INTO soak_produced (run_id, session_id, idempotency_key, mode, kind, cancel_requested) SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bool[]) ON CONFLICT DO NOTHING");
            insert.Parameters.Add(new NpgsqlParameter { Value = ids });
            insert.Parameters.Add(new NpgsqlParameter { Value = acknowledged.Select(i => i.SessionId).ToArray() });
            insert.Parameters.Add(new NpgsqlParameter { Value = acknowledged.Select(i => i.Key).ToArray() });
            insert.Parameters.Add(new NpgsqlParameter { Value = acknowledged.Select(i => i.Mode).ToArray() });
            insert.Parameters.Add(new NpgsqlParameter { Value = acknowledged.Select(i => i.Kind).ToArray() });
            insert.Parameters.Add(new NpgsqlParameter { Value = acknowledged.Select(i => i.CancelRequested).ToArray() });
            batch.BatchCommands.Add(insert);
            await batch.ExecuteNonQueryAsync();
        }

        Console.WriteLine();
        Console.WriteLine("== AgentPg soak ==");
        Console.WriteLine($"load: {loadDuration.TotalMinutes:0.0} min, {settings.Workers} worker processes, {settings.RunsPerSecond} runs/s, seed {settings.Seed}");
        Console.WriteLine($"faults injected: {chaos.Kills} kill -9, {chaos.Freezes} SIGSTOP > instance TTL, {chaos.PostgresRestarts} PostgreSQL restarts" +
                          $" ({chaos.Failures} injections failed, {workers.StartFailures} worker starts failed)");
        Console.WriteLine($"runs produced: {acknowledged.Count} acknowledged of {intents.Count} intended " +
                          $"({acknowledged.Count(i => i.Mode == "streaming")} streaming, {acknowledged.Count(i => i.Mode == "batch")} batch; " +
                          string.Join(", ", SoakModel.Kinds.Select(k => $"{acknowledged.Count(i => i.Kind == k)} {k}")) +
                          $"); cancels requested {intents.Count(i => i.CancelRequested)}");
        foreach (var (error, count) in producer.Errors.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            Console.WriteLine($"  producer call failures (retried): {error} × {count}");
        }

        Console.WriteLine("outcomes (all runs, children included): " + await TextAsync(
            "SELECT coalesce(string_agg(s, ', ' ORDER BY s), '-') FROM (SELECT format('%s %s%s', count(*), state, CASE WHEN parent_run_id IS NULL THEN '' ELSE ' (child)' END) s FROM agentpg_runs GROUP BY state, parent_run_id IS NULL) x"));
        Console.WriteLine("failed runs by error: " + await TextAsync(
            "SELECT coalesce(string_agg(s, '; ' ORDER BY s), '-') FROM (SELECT format('%s × %s: %s', count(*), error_type, left(error_message, 120)) s FROM agentpg_runs WHERE state = 'failed' GROUP BY error_type, left(error_message, 120)) x"));
        Console.WriteLine("tool executions: " + await TextAsync(
            "SELECT coalesce(string_agg(s, ', ' ORDER BY s), '-') FROM (SELECT format('%s %s %s%s', count(*), tool_name, state, CASE WHEN is_error THEN ' (error)' ELSE '' END) s FROM agentpg_tool_executions GROUP BY tool_name, state, is_error) x"));
        Console.WriteLine("rescues: " + await TextAsync(
            "SELECT format('%s runs rescued (%s times), %s tool executions rescued (%s times), %s tool attempts beyond the first', (SELECT count(*) FROM agentpg_runs WHERE rescue_attempts > 0), (SELECT coalesce(sum(rescue_attempts), 0) FROM agentpg_runs), (SELECT count(*) FROM agentpg_tool_executions WHERE rescue_attempts > 0), (SELECT coalesce(sum(rescue_attempts), 0) FROM agentpg_tool_executions), (SELECT coalesce(sum(greatest(attempt_count - 1, 0)), 0) FROM agentpg_tool_executions))"));
        Console.WriteLine();

        // 1. Lost: acknowledged ids missing, or an idempotency key that made more than one run.
        var missing = await ScalarAsync<long>("SELECT count(*) FROM soak_produced p WHERE NOT EXISTS (SELECT 1 FROM agentpg_runs r WHERE r.id = p.run_id)");
        var doubled = await ScalarAsync<long>(
            "SELECT count(*) FROM (SELECT 1 FROM agentpg_runs WHERE idempotency_key IS NOT NULL GROUP BY session_id, idempotency_key HAVING count(*) > 1) d");
        Check("runs lost", missing + doubled, $"{missing} acknowledged runs missing, {doubled} idempotency keys with more than one run");
        await DetailAsync("SELECT p.run_id, p.mode, p.kind FROM soak_produced p WHERE NOT EXISTS (SELECT 1 FROM agentpg_runs r WHERE r.id = p.run_id) LIMIT 20");

        // 2. Stuck: not final after the settle deadline.
        var stuckRuns = await ScalarAsync<long>($"SELECT count(*) FROM agentpg_runs WHERE state NOT IN {Terminal}");
        var stuckTools = await ScalarAsync<long>("SELECT count(*) FROM agentpg_tool_executions WHERE state IN ('pending', 'running')");
        Check("runs stuck", stuckRuns, $"{stuckRuns} runs not final {settings.SettleSeconds} s after the load stopped ({stuckTools} tool executions not final)");
        if (stuckRuns + stuckTools > 0)
        {
            await StuckDetailAsync();
        }

        // 3. Duplicate transactional effects, and effects that do not match their execution's outcome.
        var duplicates = await ScalarAsync<long>("SELECT count(*) FROM (SELECT 1 FROM soak_effects GROUP BY execution_id HAVING count(*) > 1) d");
        Check("duplicate transactional effects", duplicates, $"{duplicates} tool executions with more than one effect row");
        await DetailAsync("SELECT execution_id, count(*), string_agg(instance_id, ',') FROM soak_effects GROUP BY execution_id HAVING count(*) > 1 LIMIT 20");
        var effectMissing = await ScalarAsync<long>(
            $"SELECT count(*) FROM agentpg_tool_executions e WHERE e.tool_name = '{EffectTool.ToolName}' AND e.state = 'completed' AND NOT e.is_error AND NOT EXISTS (SELECT 1 FROM soak_effects f WHERE f.execution_id = e.id)");
        var effectOrphan = await ScalarAsync<long>(
            "SELECT count(*) FROM soak_effects f JOIN agentpg_tool_executions e ON e.id = f.execution_id WHERE e.state <> 'completed' OR e.is_error");
        Check("transactional effects not matching their result", effectMissing + effectOrphan,
            $"{effectMissing} successful executions without their effect, {effectOrphan} effects of executions that did not succeed");
        await DetailAsync("SELECT e.id, e.state::text, e.is_error, left(e.tool_output, 80) FROM soak_effects f JOIN agentpg_tool_executions e ON e.id = f.execution_id WHERE e.state <> 'completed' OR e.is_error LIMIT 20");

        // 4. Tool work for a cancelled run. Every body first reads its run's state in its own statement. The engine checks
        //    the claim (run not cancelled) in one statement just before the body, after registering the execution for the
        //    cancel's notification (review D9). A cancel that commits between that check and the body's first statement is
        //    a cancel during execution: the body may start, its token fires when the notification arrives, and the
        //    completion fence refuses its result (a transactional body's writes roll back). What must never happen is a
        //    result or an effect taken for a cancelled run, or a body whose token never fires.
        var sawCancelled = await ScalarAsync<long>("SELECT count(*) FROM soak_tool_calls WHERE run_state_seen = 'cancelled'");
        var taken = await ScalarAsync<long>("""
            SELECT count(*) FROM soak_tool_calls c JOIN agentpg_tool_executions e ON e.id = c.execution_id
             WHERE c.run_state_seen = 'cancelled'
               AND (e.state = 'completed' OR EXISTS (SELECT 1 FROM soak_effects f WHERE f.execution_id = c.execution_id))
            """);
        Check("tool results or effects taken for a cancelled run", taken,
            $"{taken} tool bodies that started after their run was cancelled had their result recorded or left a transactional effect");
        await DetailAsync("SELECT c.tool, c.run_id, c.execution_id, c.instance_id, c.attempt, c.started_at, c.ended_at, c.token_fired, r.finalized_at, e.state::text AS execution_state, EXISTS (SELECT 1 FROM soak_effects f WHERE f.execution_id = c.execution_id) AS left_effect FROM soak_tool_calls c JOIN agentpg_runs r ON r.id = c.run_id JOIN agentpg_tool_executions e ON e.id = c.execution_id WHERE c.run_state_seen = 'cancelled' LIMIT 20");

        // A body that read 'cancelled' and then held for more than a second without its token firing: the cancel was not
        // delivered to it (its body holds at most 1.5 s, so a missed notification shows up here). Bodies ended by a kill or
        // a restart have no end and are not counted.
        var undelivered = await ScalarAsync<long>("""
            SELECT count(*) FROM soak_tool_calls
             WHERE run_state_seen = 'cancelled' AND ended_at IS NOT NULL AND NOT token_fired AND ended_at - started_at > interval '1 second'
            """);
        var raced = await ScalarAsync<long>("SELECT count(*) FROM soak_tool_calls WHERE run_state_seen = 'cancelled' AND token_fired");
        Check("cancel not delivered to a running tool", undelivered,
            $"{sawCancelled} tool bodies started in the window between the engine's last check and their first statement while a cancel committed; {raced} of them were stopped by their token, {undelivered} ran on for more than a second without it");

        Console.WriteLine();
        Console.WriteLine(FailedChecks == 0 ? "SOAK PASSED: 0 lost, 0 stuck, 0 duplicated, 0 results taken for a cancelled run" : $"SOAK FAILED: {FailedChecks} checks failed");
    }

    private async Task StuckDetailAsync()
    {
        Console.WriteLine("  stuck runs (state, previous state, error, holder and whether it is alive, rescues, times):");
        await using (var command = dataSource.CreateCommand($"""
            SELECT r.id, r.run_mode::text, r.depth, r.state::text, r.previous_state::text, r.error_type, left(r.error_message, 160),
                   r.claimed_by_instance_id, EXISTS (SELECT 1 FROM agentpg_instances i WHERE i.id = r.claimed_by_instance_id),
                   r.rescue_attempts, r.created_at, r.claimed_at, r.last_progress_at,
                   (SELECT max(greatest(it.created_at, it.started_at, it.completed_at)) FROM agentpg_iterations it WHERE it.run_id = r.id),
                   (SELECT string_agg(format('%s/%s/%s', it.iteration_number, coalesce(it.batch_status::text, 'stream'), coalesce(it.error_type, '-')), ' ') FROM agentpg_iterations it WHERE it.run_id = r.id),
                   p.kind
              FROM agentpg_runs r LEFT JOIN soak_produced p ON p.run_id = r.id
             WHERE r.state NOT IN {Terminal}
             ORDER BY r.created_at LIMIT 30
            """))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                var lastChange = new[] { reader.GetFieldValue<DateTimeOffset>(10), Opt(reader, 11), Opt(reader, 12), Opt(reader, 13) }.Where(t => t is not null).Max()!.Value;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  run {reader.GetGuid(0)} {reader.GetString(1)} depth {reader.GetInt32(2)} kind {Str(reader, 15)}: state {reader.GetString(3)} (was {Str(reader, 4)}), error {Str(reader, 5)} {Str(reader, 6)}; " +
                    $"held by {Str(reader, 7)} (alive: {reader.GetBoolean(8)}), rescues {reader.GetInt32(9)}, iterations [{Str(reader, 14)}], last change {log.Elapsed(lastChange)}; " +
                    $"last fault before: {LastFaultBefore(lastChange)}"));
            }
        }

        Console.WriteLine("  open tool executions of stuck runs:");
        await DetailAsync("""
            SELECT e.run_id, e.tool_name, e.state::text AS state, e.claimed_by_instance_id, EXISTS (SELECT 1 FROM agentpg_instances i WHERE i.id = e.claimed_by_instance_id) AS alive,
                   e.attempt_count, e.rescue_attempts, left(e.last_error, 160), e.child_run_id, e.started_at
              FROM agentpg_tool_executions e WHERE e.state IN ('pending', 'running') ORDER BY e.created_at LIMIT 30
            """);
        Console.WriteLine("  instances: " + await TextAsync("SELECT coalesce(string_agg(id || ' (hb ' || to_char(last_heartbeat_at, 'HH24:MI:SS') || ')', ', '), '-') FROM agentpg_instances"));
    }

    private string LastFaultBefore(DateTimeOffset at)
    {
        var fault = log.Faults.Where(f => f.At <= at.AddSeconds(1)).Select(f => ((DateTimeOffset, string)?)f).LastOrDefault();
        return fault is { } f ? $"{f.Item2} at {log.Elapsed(f.Item1)}" : "none";
    }

    private void Check(string name, long count, string detail)
    {
        var ok = count == 0;
        if (!ok)
        {
            FailedChecks++;
        }

        Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {name}: {count} — {detail}");
    }

    private async Task DetailAsync(string sql)
    {
        try
        {
            await DetailCoreAsync(sql);
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidCastException)
        {
            Console.WriteLine($"    (detail query failed: {ex.Message})");
        }
    }

    private async Task DetailCoreAsync(string sql)
    {
        await using var command = dataSource.CreateCommand(sql);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            var line = new StringBuilder("    ");
            for (var i = 0; i < reader.FieldCount; i++)
            {
                line.Append(reader.GetName(i)).Append('=').Append(reader.IsDBNull(i) ? "null" : Convert.ToString(reader.GetValue(i), CultureInfo.InvariantCulture)).Append(' ');
            }

            Console.WriteLine(line.ToString());
        }
    }

    private async Task<T> ScalarAsync<T>(string sql)
    {
        await using var command = dataSource.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    private Task<string> TextAsync(string sql) => ScalarAsync<string>(sql);

    private static string Str(NpgsqlDataReader reader, int i) => reader.IsDBNull(i) ? "-" : reader.GetValue(i).ToString()!;

    private static DateTimeOffset? Opt(NpgsqlDataReader reader, int i) => reader.IsDBNull(i) ? null : reader.GetFieldValue<DateTimeOffset>(i);
}
