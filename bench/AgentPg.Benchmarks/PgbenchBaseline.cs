using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace AgentPg.Benchmarks;

/// <summary>The plain-SQL yardstick of docs/architecture.md ("Performance targets"): pgbench running the minimal lifecycle of a run on the same database.</summary>
/// <remarks>
/// Minimal tables of their own in schema <see cref="Schema"/>: runs (with a partial index on pending rows, the queue) and
/// messages. A backlog of pending runs is inserted first; each script execution is one run: claim the oldest pending run
/// with <c>FOR UPDATE SKIP LOCKED</c> in one transaction, then, in a second, insert the user and the assistant message and
/// mark the run completed. pgbench's tps is therefore runs/s. Simple query protocol (pgbench's default), -n (no vacuum
/// by pgbench: the harness vacuums the fresh tables itself).
/// </remarks>
internal static partial class PgbenchBaseline
{
    public const string Schema = "agentpg_pgbench";

    // Round trips of one script execution: the claim, then BEGIN, two INSERTs, UPDATE, COMMIT.
    private const int RoundTripsPerRun = 6;

    private const string Script = $"""
        UPDATE {Schema}.runs
           SET state = 'running', claimed_at = now()
         WHERE id = (SELECT id FROM {Schema}.runs WHERE state = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id AS run_id, session_id \gset
        BEGIN;
        INSERT INTO {Schema}.messages (session_id, run_id, role, content) VALUES (:session_id, :run_id, 'user', 'Say hello.');
        INSERT INTO {Schema}.messages (session_id, run_id, role, content) VALUES (:session_id, :run_id, 'assistant', 'Hello! How can I help you today?');
        UPDATE {Schema}.runs SET state = 'completed', response_text = 'Hello! How can I help you today?', finalized_at = now() WHERE id = :run_id;
        COMMIT;

        """;

    public static async Task<PgbenchResult> RunAsync(BenchEnvironment env, BenchOptions options, DbCounters counters)
    {
        var pgbench = FindPgbench();
        // Far more pending runs than pgbench can claim in the time (a claim that finds none aborts the client).
        var backlog = options.Smoke ? 20_000 : Math.Max(100_000, options.Seconds * 12_000);
        await env.ExecuteAsync($"""
            DROP SCHEMA IF EXISTS {Schema} CASCADE;
            CREATE SCHEMA {Schema};
            CREATE TABLE {Schema}.runs (
                id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                session_id    BIGINT NOT NULL,
                state         TEXT NOT NULL DEFAULT 'pending',
                prompt        TEXT NOT NULL,
                response_text TEXT,
                created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
                claimed_at    TIMESTAMPTZ,
                finalized_at  TIMESTAMPTZ);
            CREATE INDEX runs_pending ON {Schema}.runs (id) WHERE state = 'pending';
            CREATE TABLE {Schema}.messages (
                id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                session_id  BIGINT NOT NULL,
                run_id      BIGINT NOT NULL,
                role        TEXT NOT NULL,
                content     TEXT NOT NULL,
                created_at  TIMESTAMPTZ NOT NULL DEFAULT now());
            CREATE INDEX messages_session ON {Schema}.messages (session_id, id);
            INSERT INTO {Schema}.runs (session_id, prompt) SELECT g, 'Say hello.' FROM generate_series(1, {backlog}) g;
            """);
        await env.SettleAsync($"{Schema}.runs", $"{Schema}.messages");

        var scriptPath = Path.Combine(Path.GetTempPath(), $"agentpg-pgbench-{Environment.ProcessId}.sql");
        await File.WriteAllTextAsync(scriptPath, Script);
        try
        {
            var c = env.Connection;
            var clients = options.Concurrency.ToString(CultureInfo.InvariantCulture);
            var arguments = new List<string>
            {
                "-h", c.Host!, "-p", c.Port.ToString(CultureInfo.InvariantCulture), "-U", c.Username!,
                "-n", "-c", clients, "-j", clients, "-T", options.Seconds.ToString(CultureInfo.InvariantCulture),
                "-f", scriptPath, c.Database!,
            };
            var before = await counters.TakeAsync(env);
            var (exitCode, output) = await RunProcessAsync(pgbench, arguments, c.Password);
            var after = await counters.TakeAsync(env);
            var tps = TpsLine().Match(output);
            var processed = ProcessedLine().Match(output);
            if (exitCode != 0 || !tps.Success || !processed.Success)
            {
                throw new InvalidOperationException($"pgbench failed (exit code {exitCode}):{Environment.NewLine}{output}");
            }

            var runs = long.Parse(processed.Groups[1].Value, CultureInfo.InvariantCulture);
            var pending = await env.ScalarAsync<long>($"SELECT count(*) FROM {Schema}.runs WHERE state = 'pending'");
            var cost = before.PerRun(after, runs, clientOperations: false) with { RoundTrips = RoundTripsPerRun };
            return new PgbenchResult(options.Concurrency, options.Seconds, runs, double.Parse(tps.Groups[1].Value, CultureInfo.InvariantCulture),
                cost, pending, arguments);
        }
        finally
        {
            File.Delete(scriptPath);
        }
    }

    private static string FindPgbench()
    {
        if (Environment.GetEnvironmentVariable("AGENTPG_PG_BIN") is { Length: > 0 } bin && File.Exists(Path.Combine(bin, "pgbench")))
        {
            return Path.Combine(bin, "pgbench");
        }

        var onPath = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, "pgbench")).FirstOrDefault(File.Exists);
        return onPath ?? throw new InvalidOperationException(
            "pgbench not found: set AGENTPG_PG_BIN to PostgreSQL's bin directory (./build.sh bench does) or put pgbench on PATH.");
    }

    private static async Task<(int ExitCode, string Output)> RunProcessAsync(string fileName, IEnumerable<string> arguments, string? password)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        if (!string.IsNullOrEmpty(password))
        {
            start.Environment["PGPASSWORD"] = password;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {fileName}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }

    [GeneratedRegex(@"^tps = ([0-9.]+) \(without initial connection time\)", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex TpsLine();

    [GeneratedRegex(@"^number of transactions actually processed: ([0-9]+)", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex ProcessedLine();
}

internal sealed record PgbenchResult(int Clients, int Seconds, long Runs, double Tps, DbCounters.Cost Cost, long PendingLeft, IReadOnlyList<string> Arguments);
