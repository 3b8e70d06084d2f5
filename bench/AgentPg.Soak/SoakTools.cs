using System.Text.Json;
using Npgsql;

namespace AgentPg.Soak;

/// <summary>The tables the soak's tools write and its checks read (beside AgentPg's own).</summary>
internal static class SoakSchema
{
    public const string Create = """
        CREATE TABLE IF NOT EXISTS soak_tool_calls (
            id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id           uuid NOT NULL,
            execution_id     uuid NOT NULL,
            idempotency_key  text NOT NULL,
            tool             text NOT NULL,
            attempt          int NOT NULL,
            instance_id      text NOT NULL,
            run_state_seen   text,
            started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
            ended_at         timestamptz,
            token_fired      boolean);
        CREATE TABLE IF NOT EXISTS soak_effects (
            id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id           uuid NOT NULL,
            execution_id     uuid NOT NULL,
            idempotency_key  text NOT NULL,
            instance_id      text NOT NULL,
            created_at       timestamptz NOT NULL DEFAULT clock_timestamp());
        CREATE TABLE IF NOT EXISTS soak_produced (
            run_id           uuid PRIMARY KEY,
            session_id       uuid NOT NULL,
            idempotency_key  text NOT NULL,
            mode             text NOT NULL,
            kind             text NOT NULL,
            cancel_requested boolean NOT NULL DEFAULT false);
        """;

    /// <summary>Records, in its own committed statement, that a tool body starts, with the state its run has right now:
    /// a body that starts for a run already cancelled shows up as <c>run_state_seen = 'cancelled'</c>. Returns the row's id
    /// for <see cref="RecordEndAsync"/>.</summary>
    public static async Task<long> RecordCallAsync(NpgsqlDataSource dataSource, string instanceId, string tool, ToolContext context, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("""
            INSERT INTO soak_tool_calls (run_id, execution_id, idempotency_key, tool, attempt, instance_id, run_state_seen)
            SELECT $1, $2, $3, $4, $5, $6, (SELECT state::text FROM agentpg_runs WHERE id = $1)
            RETURNING id
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = context.RunId });
        command.Parameters.Add(new NpgsqlParameter { Value = context.ToolExecutionId });
        command.Parameters.Add(new NpgsqlParameter { Value = context.IdempotencyKey });
        command.Parameters.Add(new NpgsqlParameter { Value = tool });
        command.Parameters.Add(new NpgsqlParameter { Value = context.Attempt });
        command.Parameters.Add(new NpgsqlParameter { Value = instanceId });
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>Records, in its own statement, that the body ended and whether its cancellation token had fired by then
    /// (a cancel that commits while the body runs reaches the token through the cancel's notification). Best effort: a
    /// body ended by a kill or a restart leaves <c>ended_at</c> null.</summary>
    public static async Task RecordEndAsync(NpgsqlDataSource dataSource, long callId, CancellationToken bodyToken)
    {
        try
        {
            await using var command = dataSource.CreateCommand("UPDATE soak_tool_calls SET ended_at = clock_timestamp(), token_fired = $2 WHERE id = $1");
            command.Parameters.Add(new NpgsqlParameter { Value = callId });
            command.Parameters.Add(new NpgsqlParameter { Value = bodyToken.IsCancellationRequested });
            await command.ExecuteNonQueryAsync(CancellationToken.None);
        }
        catch (NpgsqlException)
        {
            // The database went away (a restart of the chaos loop): the end stays unknown.
        }
    }

    public static ToolSchema HoldSchema { get; } = new()
    {
        Properties = new Dictionary<string, PropertyDef>
        {
            ["label"] = new() { Type = "string", Description = "What to record" },
            ["hold_ms"] = new() { Type = "integer", Minimum = 0, Maximum = 10000, Description = "How long the tool takes" },
        },
        Required = ["label"],
    };

    public static async Task HoldAsync(JsonElement input, CancellationToken cancellationToken)
    {
        if (input.TryGetProperty("hold_ms", out var hold) && hold.GetInt32() > 0)
        {
            await Task.Delay(hold.GetInt32(), cancellationToken);
        }
    }
}

/// <summary>A transactional tool: one effect row per call, written in the tool's transaction, so the row exists exactly
/// when the result was recorded; two rows for one execution are a duplicated effect.</summary>
internal sealed class EffectTool(NpgsqlDataSource dataSource, string instanceId) : ITransactionalTool
{
    public const string ToolName = "soak_effect";

    public string Name => ToolName;

    public string Description => "Records an effect in the caller's transaction.";

    public ToolSchema InputSchema => SoakSchema.HoldSchema;

    public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var call = await SoakSchema.RecordCallAsync(dataSource, instanceId, Name, context, cancellationToken);
        try
        {
            return await RecordEffectAsync(context, input, cancellationToken);
        }
        finally
        {
            await SoakSchema.RecordEndAsync(dataSource, call, cancellationToken);
        }
    }

    private async Task<string> RecordEffectAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var transaction = context.Transaction!;
        await using (var command = new NpgsqlCommand(
            "INSERT INTO soak_effects (run_id, execution_id, idempotency_key, instance_id) VALUES ($1, $2, $3, $4)",
            transaction.Connection, transaction))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = context.RunId });
            command.Parameters.Add(new NpgsqlParameter { Value = context.ToolExecutionId });
            command.Parameters.Add(new NpgsqlParameter { Value = context.IdempotencyKey });
            command.Parameters.Add(new NpgsqlParameter { Value = instanceId });
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        await SoakSchema.HoldAsync(input, cancellationToken);
        return "recorded " + input.GetProperty("label").GetString();
    }
}

/// <summary>A plain tool: records that it ran (outside any transaction), waits, echoes.</summary>
internal sealed class EchoTool(NpgsqlDataSource dataSource, string instanceId) : ITool
{
    public const string ToolName = "soak_echo";

    public string Name => ToolName;

    public string Description => "Waits, then echoes the label.";

    public ToolSchema InputSchema => SoakSchema.HoldSchema;

    public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var call = await SoakSchema.RecordCallAsync(dataSource, instanceId, Name, context, cancellationToken);
        try
        {
            await SoakSchema.HoldAsync(input, cancellationToken);
            return "echo " + input.GetProperty("label").GetString();
        }
        finally
        {
            await SoakSchema.RecordEndAsync(dataSource, call, cancellationToken);
        }
    }
}
