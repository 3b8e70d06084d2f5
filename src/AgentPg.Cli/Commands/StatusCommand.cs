using System.CommandLine;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg status</c>: instances, the queue by state and mode, pending approvals.</summary>
internal static class StatusCommand
{
    public static Command Create(CliGlobals globals)
    {
        var command = new Command("status", "Show the worker instances (health, leader, in-flight work), the queue depth by state and mode, and the pending approvals.");
        var heartbeatInterval = new Option<string>("--heartbeat-interval")
        {
            Description = "The workers' AgentPgOptions.HeartbeatInterval (90s, 15m …): a heartbeat older than two of them is late.",
            DefaultValueFactory = _ => "15s",
        };
        var instanceTtl = new Option<string>("--instance-ttl")
        {
            Description = "The workers' AgentPgOptions.InstanceTtl (90s, 15m …): a heartbeat older than this is stale (the leader rescues its work).",
            DefaultValueFactory = _ => "2m",
        };
        command.Options.Add(heartbeatInterval);
        command.Options.Add(instanceTtl);
        globals.SetAction(command, (parsed, context, cancellationToken) => RunAsync(context,
            Format.PositiveDuration(parsed.GetValue(heartbeatInterval)!, "--heartbeat-interval"),
            Format.PositiveDuration(parsed.GetValue(instanceTtl)!, "--instance-ttl"), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(CliContext context, TimeSpan heartbeatInterval, TimeSpan instanceTtl, CancellationToken cancellationToken)
    {
        var client = context.Client;
        var instances = await client.ListInstancesAsync(cancellationToken).ConfigureAwait(false);
        var statistics = await client.GetRunStatisticsAsync(TimeSpan.FromHours(1), TimeSpan.FromHours(1), cancellationToken: cancellationToken).ConfigureAwait(false);
        var approvals = await client.GetPendingApprovalsAsync(limit: 1000, cancellationToken: cancellationToken).ConfigureAwait(false);
        // As the health check and the admin UI judge it, with the workers' options (which the database does not hold): two
        // missed beats are late; older than InstanceTtl is stale (the leader rescues its work and removes it).
        string Health(InstanceInfo instance)
            => instance.HeartbeatAge <= 2 * heartbeatInterval ? "ok" : instance.HeartbeatAge <= instanceTtl ? "late" : "stale";
        if (context.Json)
        {
            context.WriteJson(new
            {
                schema = context.Schema,
                instances = instances.Select(i => new { instance = i, healthy = Health(i) == "ok", health = Health(i) }),
                queue = statistics.Queue,
                pendingApprovals = approvals.Count,
                lastHour = statistics.CreatedByState,
            });
            return CliExitCodes.Success;
        }

        context.WriteLine($"AgentPg schema \"{context.Schema}\" on {context.DatabaseDescription}");
        context.WriteLine();
        if (instances.Count == 0)
        {
            context.WriteLine("Instances: none (no worker is running; runs wait in the queue).");
        }
        else
        {
            var table = CliContext.Table("Instance", "Name", "Host", "Health", "Leader", "Runs", "Tools", "Version");
            foreach (var instance in instances)
            {
                CliContext.AddRow(table, instance.Id, instance.Name, instance.Hostname,
                    $"{Health(instance)} ({Format.Duration(instance.HeartbeatAge)} ago)",
                    instance.IsLeader ? "yes" : "",
                    $"{instance.ActiveRuns}/{instance.MaxConcurrentRuns}", $"{instance.ActiveToolExecutions}/{instance.MaxConcurrentTools}", instance.Version);
            }

            context.WriteLine("Instances:");
            context.Write(table);
        }

        context.WriteLine();
        if (statistics.Queue.Count == 0)
        {
            context.WriteLine("Queue: empty.");
        }
        else
        {
            var queue = CliContext.Table("State", "Mode", "Runs");
            foreach (var depth in statistics.Queue.OrderBy(q => q.State).ThenBy(q => q.Mode))
            {
                CliContext.AddRow(queue, Format.Name(depth.State), Format.Name(depth.Mode), depth.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }

            context.WriteLine("Queue:");
            context.Write(queue);
        }

        context.WriteLine();
        context.WriteLine(approvals.Count == 0
            ? "Pending approvals: none."
            : $"Pending approvals: {approvals.Count}{(approvals.Count >= 1000 ? "+" : "")} (agentpg approvals list).");
        return CliExitCodes.Success;
    }
}
