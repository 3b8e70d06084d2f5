using System.CommandLine;
using Spectre.Console;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg migrate [--to N]</c> and <c>agentpg migrate status</c>.</summary>
internal static class MigrateCommands
{
    public static Command Create(CliGlobals globals)
    {
        var to = new Option<int?>("--to") { Description = "The schema version to migrate to (default: the latest); lower than the current version rolls back." };
        var migrate = new Command("migrate", "Migrate the AgentPg schema to the latest version (or --to N). Safe to run from every deploy: an advisory lock serialises concurrent runs.");
        migrate.Options.Add(to);
        globals.SetAction(migrate, (parsed, context, cancellationToken) => MigrateAsync(context, parsed.GetValue(to), cancellationToken));

        var status = new Command("status", "Show the schema's current and target version and the pending migrations. Exit code 0: up to date; 3: migrations pending.");
        globals.SetAction(status, (_, context, cancellationToken) => StatusAsync(context, cancellationToken));
        migrate.Subcommands.Add(status);
        return migrate;
    }

    private static async Task<int> MigrateAsync(CliContext context, int? to, CancellationToken cancellationToken)
    {
        var latest = AgentPgMigrator.LatestVersion;
        var target = to ?? latest;
        if (target < 0 || target > latest)
        {
            throw CliException.Usage($"--to {target}: the versions this agentpg knows are 0 to {latest}.");
        }

        var migrator = new AgentPgMigrator(context.DataSource, context.Schema);
        var from = await migrator.GetVersionAsync(cancellationToken).ConfigureAwait(false);
        var steps = from == target ? "nothing to do" : from < target ? $"applying {target - from} migration(s)" : $"rolling back {from - target} migration(s)";
        async Task<int> ApplyAsync()
        {
            if (target < from)
            {
                await migrator.RollbackAsync(target, cancellationToken).ConfigureAwait(false);
                return target;
            }

            return await migrator.MigrateAsync(target, cancellationToken).ConfigureAwait(false);
        }

        int version;
        if (from == target)
        {
            version = from;
        }
        else if (!context.Json && context.Console.Profile.Capabilities.Interactive)
        {
            version = await context.Console.Status().StartAsync($"Schema \"{Markup.Escape(context.Schema)}\": {steps} ({from} → {target})…",
                _ => ApplyAsync()).ConfigureAwait(false);
        }
        else
        {
            if (!context.Json)
            {
                context.WriteLine($"Schema \"{context.Schema}\" on {context.DatabaseDescription}: {steps} ({from} → {target})…");
            }

            version = await ApplyAsync().ConfigureAwait(false);
        }

        if (context.Json)
        {
            context.WriteJson(new { schema = context.Schema, from, version, latest, changed = from != version });
        }
        else
        {
            context.WriteLine(from == version
                ? $"Schema \"{context.Schema}\" is at version {version} (latest {latest}): nothing to do."
                : $"Schema \"{context.Schema}\" migrated from version {from} to {version} (latest {latest}).");
        }

        return CliExitCodes.Success;
    }

    private static async Task<int> StatusAsync(CliContext context, CancellationToken cancellationToken)
    {
        var migrator = new AgentPgMigrator(context.DataSource, context.Schema);
        var current = await migrator.GetVersionAsync(cancellationToken).ConfigureAwait(false);
        var latest = AgentPgMigrator.LatestVersion;
        var pending = Enumerable.Range(current + 1, Math.Max(0, latest - current)).Select(v => new { version = v, file = FileName(v) }).ToList();
        if (context.Json)
        {
            context.WriteJson(new { schema = context.Schema, current, target = latest, upToDate = current >= latest, pending });
        }
        else
        {
            context.WriteLine($"Schema   \"{context.Schema}\" on {context.DatabaseDescription}");
            context.WriteLine($"Current  {current}{(current == 0 ? " (not migrated)" : "")}");
            context.WriteLine($"Target   {latest}");
            context.WriteLine(pending.Count == 0
                ? current > latest ? $"Newer than this agentpg knows ({latest}): upgrade agentpg." : "Up to date."
                : $"Pending  {string.Join(", ", pending.Select(p => p.file))} (run 'agentpg migrate')");
        }

        return pending.Count == 0 ? CliExitCodes.Success : CliExitCodes.MigrationsPending;
    }

    /// <summary>The migration's file name in the package: the version and the first line of the script's comment.</summary>
    private static string FileName(int version)
    {
        var firstLine = AgentPgMigrator.GetScript(version).Split('\n', 2)[0].Trim();
        var name = firstLine.StartsWith("--", StringComparison.Ordinal) ? firstLine.TrimStart('-', ' ') : "";
        return name.Length > 0 ? $"{version:000} ({Format.Line(name, 60)})" : $"{version:000}";
    }
}
