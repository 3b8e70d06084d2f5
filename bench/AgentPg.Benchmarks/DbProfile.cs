using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Npgsql;

namespace AgentPg.Benchmarks;

/// <summary>Where a measured window's database work went, per run (bench/profile-db.sh; bench/README.md, "Where the
/// database time goes"): each statement's calls, execution ms and WAL bytes (<c>pg_stat_statements</c> with
/// <c>track = all</c>), each PL/pgSQL function's calls and self/total ms (<c>pg_stat_user_functions</c>, with
/// <c>track_functions = pl</c>), and the window's WAL by record type and by relation (<c>pg_walinspect</c>).</summary>
/// <remarks>Off unless <c>AGENTPG_BENCH_PROFILE</c> names a directory: the report of each window is written there as
/// markdown (<c>profile-&lt;label&gt;.md</c>) and printed. The server needs <c>pg_stat_statements</c> in
/// <c>shared_preload_libraries</c>; <c>pg_walinspect</c> is optional (PostgreSQL 15+). Counts and WAL bytes do not depend on
/// the machine's load; the ms do, so read them as shares. Function statistics reach the shared counters when a backend
/// goes idle (at most once a second in PostgreSQL 15), so their calls can be off by about a second's worth at either end
/// of the window; statements' counters are exact.</remarks>
internal sealed partial class DbProfile
{
    private readonly string _directory;
    private readonly bool _walInspect;
    private Dictionary<string, (long Calls, double Self, double Total)> _functionsBefore = [];
    private string _startLsn = "0/0";

    private DbProfile(string directory, bool walInspect)
    {
        _directory = directory;
        _walInspect = walInspect;
    }

    /// <summary>The profile the environment asks for, or <see langword="null"/> when <c>AGENTPG_BENCH_PROFILE</c> is unset.</summary>
    public static async Task<DbProfile?> CreateAsync(BenchEnvironment env)
    {
        var directory = Environment.GetEnvironmentVariable("AGENTPG_BENCH_PROFILE");
        if (string.IsNullOrEmpty(directory))
        {
            return null;
        }

        Directory.CreateDirectory(directory);
        await env.ExecuteAsync("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        var walInspect = true;
        try
        {
            await env.ExecuteAsync("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
        }
        catch (PostgresException e)
        {
            Console.Error.WriteLine($"[profile] pg_walinspect is not available ({e.MessageText}): no WAL by record type or relation.");
            walInspect = false;
        }

        return new DbProfile(directory, walInspect);
    }

    /// <summary>The window starts: statement counters reset, function counters and the WAL position remembered.</summary>
    public async Task BeginAsync(BenchEnvironment env)
    {
        await env.ExecuteAsync("SELECT pg_stat_statements_reset()");
        _functionsBefore = await ReadFunctionsAsync(env);
        _startLsn = await env.ScalarAsync<string>("SELECT pg_current_wal_lsn()::text");
    }

    /// <summary>The window ends: the counters are read at once; the WAL of the window is analysed afterwards
    /// (<see cref="WriteAsync"/>), when the load has stopped.</summary>
    public async Task<Window> EndAsync(BenchEnvironment env)
    {
        var endLsn = await env.ScalarAsync<string>("SELECT pg_current_wal_lsn()::text");
        var statements = new List<StatementRow>();
        await using (var command = env.DataSource.CreateCommand("""
            SELECT s.query, s.toplevel, s.calls, s.total_exec_time, s.wal_bytes::bigint, s.wal_records
            FROM pg_stat_statements s
            WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND s.query NOT LIKE '%pg_stat_statements%' AND s.query NOT LIKE '%pg_current_wal_lsn%'
              AND s.query NOT LIKE '%pg_stat_user_functions%'
            ORDER BY s.total_exec_time DESC
            """))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                statements.Add(new StatementRow(reader.GetString(0), reader.GetBoolean(1), reader.GetInt64(2), reader.GetDouble(3),
                    reader.GetInt64(4), reader.GetInt64(5)));
            }
        }

        var after = await ReadFunctionsAsync(env);
        var functions = after
            .Select(f => _functionsBefore.TryGetValue(f.Key, out var b)
                ? (Name: f.Key, Calls: f.Value.Calls - b.Calls, Self: f.Value.Self - b.Self, Total: f.Value.Total - b.Total)
                : (Name: f.Key, f.Value.Calls, f.Value.Self, f.Value.Total))
            .Where(f => f.Calls > 0)
            .OrderByDescending(f => f.Self)
            .ToList();
        return new Window(_startLsn, endLsn, statements, functions);
    }

    /// <summary>Writes and prints the window's report, per run.</summary>
    public async Task WriteAsync(BenchEnvironment env, string label, Window window, long runs)
    {
        var n = Math.Max(1, runs);
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"## {label}: {runs} runs, WAL {window.StartLsn} .. {window.EndLsn}");
        text.AppendLine();
        text.AppendLine("Statements (pg_stat_statements, track = all: a top-level statement's WAL includes what its functions and triggers wrote; nested ones are marked):");
        text.AppendLine();
        text.AppendLine("| statement | calls/run | mean ms | ms/run | WAL B/run | WAL records/run |");
        text.AppendLine("|---|---|---|---|---|---|");
        foreach (var s in window.Statements.Where(s => s.Calls >= n / 100.0))
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {(s.TopLevel ? "" : "*nested:* ")}`{Shorten(s.Query)}` | {s.Calls / (double)n:0.00} | {s.TotalMs / s.Calls:0.000} | {s.TotalMs / n:0.000} | {s.WalBytes / (double)n:0} | {s.WalRecords / (double)n:0.0} |");
        }

        var top = window.Statements.Where(s => s.TopLevel).ToList();
        text.AppendLine(CultureInfo.InvariantCulture,
            $"| **all top-level statements** | {top.Sum(s => s.Calls) / (double)n:0.00} | | {top.Sum(s => s.TotalMs) / n:0.000} | {top.Sum(s => s.WalBytes) / (double)n:0} | {top.Sum(s => s.WalRecords) / (double)n:0.0} |");
        text.AppendLine();
        text.AppendLine("PL/pgSQL functions (pg_stat_user_functions, track_functions = pl):");
        text.AppendLine();
        text.AppendLine("| function | calls/run | self ms/run | total ms/run | self µs/call |");
        text.AppendLine("|---|---|---|---|---|");
        foreach (var f in window.Functions)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {f.Name} | {f.Calls / (double)n:0.00} | {f.Self / n:0.000} | {f.Total / n:0.000} | {f.Self * 1000 / f.Calls:0.0} |");
        }

        if (window.Functions.Count == 0)
        {
            text.AppendLine("| (none called, or track_functions is off) | | | | |");
        }

        if (_walInspect)
        {
            await AppendWalAsync(env, text, window, n);
        }

        var report = text.ToString();
        Console.WriteLine();
        Console.WriteLine(report);
        var file = Path.Combine(_directory, "profile-" + NonWord().Replace(label, "-") + ".md");
        await File.WriteAllTextAsync(file, report);
    }

    private static async Task AppendWalAsync(BenchEnvironment env, StringBuilder text, Window window, long n)
    {
        text.AppendLine();
        text.AppendLine("WAL by record type (pg_walinspect; full-page images counted apart):");
        text.AppendLine();
        text.AppendLine("| resource manager / record | records/run | B/run | FPI B/run |");
        text.AppendLine("|---|---|---|---|");
        await using (var command = WalCommand(env, window, """
            SELECT resource_manager || '/' || record_type, count(*), sum(record_length), sum(fpi_length)
            FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)
            GROUP BY 1 ORDER BY 3 DESC
            """))
        {
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| {reader.GetString(0)} | {reader.GetInt64(1) / (double)n:0.00} | {reader.GetInt64(2) / (double)n:0} | {reader.GetInt64(3) / (double)n:0} |");
            }
        }

        text.AppendLine();
        text.AppendLine("WAL by relation (the record's first block; an index's B-tree insert records are its entries):");
        text.AppendLine();
        text.AppendLine("| relation | kind | records/run | B/run | of which inserts/run |");
        text.AppendLine("|---|---|---|---|---|");
        await using (var command = WalCommand(env, window, """
            WITH r AS (
                SELECT substring(block_ref FROM 'rel \d+/\d+/(\d+)')::oid AS filenode,
                       resource_manager, record_type, record_length
                FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn))
            SELECT coalesce(pg_filenode_relation(0, r.filenode)::text, CASE WHEN r.filenode IS NULL THEN '(no relation)' ELSE 'filenode ' || r.filenode END),
                   coalesce((SELECT CASE c.relkind WHEN 'i' THEN 'index' WHEN 'r' THEN 'heap' WHEN 't' THEN 'toast' ELSE c.relkind::text END
                             FROM pg_class c WHERE c.oid = pg_filenode_relation(0, r.filenode)), ''),
                   count(*), sum(record_length),
                   count(*) FILTER (WHERE record_type LIKE 'INSERT%')
            FROM r GROUP BY 1, 2 ORDER BY 4 DESC
            """))
        {
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| {reader.GetString(0)} | {reader.GetString(1)} | {reader.GetInt64(2) / (double)n:0.00} | {reader.GetInt64(3) / (double)n:0} | {reader.GetInt64(4) / (double)n:0.00} |");
            }
        }
    }

    // A query over the window's WAL ($1 start LSN, $2 end LSN); reading a window's records takes a while.
    private static NpgsqlCommand WalCommand(BenchEnvironment env, Window window, string sql)
    {
        var command = env.DataSource.CreateCommand(sql);
        command.CommandTimeout = 600;
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = window.StartLsn });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = window.EndLsn });
        return command;
    }

    private static async Task<Dictionary<string, (long Calls, double Self, double Total)>> ReadFunctionsAsync(BenchEnvironment env)
    {
        var functions = new Dictionary<string, (long, double, double)>();
        await using var command = env.DataSource.CreateCommand(
            "SELECT pg_stat_clear_snapshot(); SELECT schemaname || '.' || funcname, calls, self_time, total_time FROM pg_stat_user_functions");
        await using var reader = await command.ExecuteReaderAsync();
        await reader.NextResultAsync();
        while (await reader.ReadAsync())
        {
            // Overloads share a name; their counters are added.
            var name = reader.GetString(0);
            functions.TryGetValue(name, out var seen);
            functions[name] = (seen.Item1 + reader.GetInt64(1), seen.Item2 + reader.GetDouble(2), seen.Item3 + reader.GetDouble(3));
        }

        return functions;
    }

    private static string Shorten(string query)
    {
        var flat = Whitespace().Replace(query, " ").Trim().Replace("|", "\\|", StringComparison.Ordinal);
        return flat.Length <= 140 ? flat : flat[..137] + "...";
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    [GeneratedRegex(@"\W+")]
    private static partial Regex NonWord();

    public sealed record StatementRow(string Query, bool TopLevel, long Calls, double TotalMs, long WalBytes, long WalRecords);

    public sealed record Window(string StartLsn, string EndLsn, IReadOnlyList<StatementRow> Statements,
        IReadOnlyList<(string Name, long Calls, double Self, double Total)> Functions);
}
