using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Workers;

/// <summary>A tool execution's result, to be written (fenced) by <see cref="ToolResultWriter"/>.</summary>
internal sealed record ToolResult(ToolExecution Execution, ToolExecutionState State, string? Output, bool IsError, string? ErrorMessage, string? BlocksJson)
{
    /// <summary>Whether the result was written, and the mode of the run it continued (null when other executions are open).</summary>
    public TaskCompletionSource<(bool Written, string? ContinuedRunMode)> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>Writes the results of one run's tool executions that end together in one transaction (a group commit): while a
/// result of a run is being written, the results of the same run that arrive meanwhile wait and are written together next,
/// each with its own fence. Parallel tool calls mostly end together, so a run's five results take two transactions
/// instead of five (bench/README.md, "The tool path"). Nothing waits for a result that has not arrived: a result alone is
/// written at once. One run per transaction keeps the lock order of a single result (the run, then its executions).</summary>
/// <remarks>A batch that fails for any reason (a fence refusing one of its results, the database away) writes nothing; each of
/// its results is then written alone by its runner, as it would have been without the batch, with its own retries and errors.</remarks>
internal sealed class ToolResultWriter(Engine engine)
{
    private readonly Lock _gate = new();

    // Runs with a write under way, and the results of each that arrived meanwhile.
    private readonly Dictionary<Guid, List<ToolResult>> _waiting = [];

    /// <summary>Writes <paramref name="result"/>, alone or with others of its run. Not written (false) when its batch failed:
    /// the caller then writes it alone.</summary>
    public async Task<(bool Written, string? ContinuedRunMode)> WriteAsync(ToolResult result, CancellationToken cancellationToken)
    {
        var runId = result.Execution.RunId;
        var queued = false;
        lock (_gate)
        {
            if (_waiting.TryGetValue(runId, out var waiting))
            {
                // Written by the write under way, with the others that arrive meanwhile, once it ends.
                waiting.Add(result);
                queued = true;
            }
            else
            {
                _waiting[runId] = [];
            }
        }

        if (queued)
        {
            return await result.Done.Task.ConfigureAwait(false);
        }

        List<ToolResult> batch = [result];
        while (true)
        {
            await WriteBatchAsync(batch, cancellationToken).ConfigureAwait(false);
            lock (_gate)
            {
                var next = _waiting[runId];
                if (next.Count == 0)
                {
                    _waiting.Remove(runId);
                    break;
                }

                _waiting[runId] = [];
                batch = next;
            }
        }

        return await result.Done.Task.ConfigureAwait(false);
    }

    private async Task WriteBatchAsync(List<ToolResult> results, CancellationToken cancellationToken)
    {
        string? continuedRunMode;
        try
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                foreach (var r in results)
                {
                    engine.Sql.ToolExecutions.AddFence(batch, r.Execution, engine.InstanceId);
                    engine.Sql.ToolExecutions.AddComplete(batch, r.Execution.Id, r.State, r.Output, r.IsError, r.ErrorMessage, r.BlocksJson);
                }

                engine.Sql.ToolExecutions.AddContinuedRunMode(batch, results[0].Execution.RunId);
                var reader = await engine.ExecuteReaderAsync(batch, cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    continuedRunMode = await ToolExecutionSql.ReadContinuedRunModeAsync(reader, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (Exception)
        {
            // Nothing of the batch was written; each runner writes its result alone (and meets the error itself, if it is one).
            foreach (var r in results)
            {
                r.Done.TrySetResult((false, null));
            }

            return;
        }

        foreach (var r in results)
        {
            r.Done.TrySetResult((true, continuedRunMode));
        }
    }
}
