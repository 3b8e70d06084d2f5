using System.Collections.Concurrent;
using System.Reflection;
using AgentPg.Diagnostics;
using AgentPg.Storage;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AgentPg.Workers;

/// <summary>This instance's rows: agentpg_instances (registered at start, again after an eviction, removed at stop, with
/// its work released) and agentpg_instance_tools (kept in step with the client's tools while it is started).</summary>
internal sealed class InstanceRegistration(NpgsqlDataSource dataSource, Sql sql, AgentPgOptions options, string instanceId,
    ConcurrentDictionary<string, ITool> tools, ILogger logger) : IDisposable
{
    private static readonly string s_version =
        typeof(InstanceRegistration).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    // Serializes background tool syncs, so the database ends in the state of the last change to a tool.
    private readonly SemaphoreSlim _toolSync = new(1, 1);

    /// <summary>Registers the instance and all its tools in one transaction (the tool rows reference the instance row).</summary>
    public async Task RegisterAsync(CancellationToken cancellationToken)
    {
        var batch = dataSource.CreateBatch();
        await using (batch.ConfigureAwait(false))
        {
            sql.Instances.AddRegister(batch, instanceId, options.InstanceName, HostName, s_version, options.MaxConcurrentRuns, options.MaxConcurrentTools);
            sql.Instances.AddRegisterTools(batch, instanceId, [.. tools.Values]);
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Releases everything the instance still holds back to the queue (not counted as a rescue) and removes its row.</summary>
    /// <returns>How many runs and tool executions were released.</returns>
    public async Task<int> DeregisterAsync(CancellationToken cancellationToken)
    {
        var batch = dataSource.CreateBatch();
        await using (batch.ConfigureAwait(false))
        {
            sql.Instances.AddDeregister(batch, instanceId);
            var released = await batch.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return released is int n ? n : 0;
        }
    }

    /// <summary>How long ago the instance last recorded a heartbeat, by the database clock; null when it is not registered.</summary>
    public async Task<TimeSpan?> GetHeartbeatAgeAsync(CancellationToken cancellationToken)
    {
        var command = sql.Instances.HeartbeatAgeCommand(dataSource, instanceId);
        await using (command.ConfigureAwait(false))
        {
            var seconds = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return seconds is double s ? TimeSpan.FromSeconds(s) : null;
        }
    }

    /// <summary>The holder of the live leader lease, or how long no instance has held one (counted from this instance's
    /// registration at the earliest); null when this instance is not registered.</summary>
    public async Task<(string? LeaderId, TimeSpan? Leaderless)?> GetLeaderStatusAsync(CancellationToken cancellationToken)
    {
        var command = sql.Instances.LeaderStatusCommand(dataSource, instanceId);
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    return null;
                }

                return (reader.IsDBNull(0) ? null : reader.GetString(0), reader.IsDBNull(1) ? null : TimeSpan.FromSeconds(reader.GetDouble(1)));
            }
        }
    }

    /// <summary>Writes the current registration state of one tool (registered or not) in the background; failures are logged.</summary>
    public async Task SyncToolInBackgroundAsync(string name)
    {
        try
        {
            await _toolSync.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                var batch = dataSource.CreateBatch();
                await using (batch.ConfigureAwait(false))
                {
                    if (tools.TryGetValue(name, out var tool))
                    {
                        sql.Instances.AddRegisterTools(batch, instanceId, [tool]);
                    }
                    else
                    {
                        sql.Instances.AddUnregisterTools(batch, instanceId, [name]);
                    }

                    await batch.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
            finally
            {
                _toolSync.Release();
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException or ObjectDisposedException)
        {
            Log.ToolSyncFailed(logger, ex, name);
        }
    }

    /// <summary>Releases the sync gate (a tool sync still running afterwards fails quietly, logged).</summary>
    public void Dispose() => _toolSync.Dispose();

    /// <summary>The machine's name, or "unknown" where the platform does not give one.</summary>
    public static string HostName
    {
        get
        {
            try
            {
                return Environment.MachineName is { Length: > 0 } name ? name : "unknown";
            }
            catch (InvalidOperationException)
            {
                return "unknown";
            }
        }
    }
}
