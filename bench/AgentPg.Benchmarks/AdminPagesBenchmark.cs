using System.Diagnostics;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AgentPg.Benchmarks;

/// <summary>
/// The admin UI over a large history: runs and messages seeded with SQL (default 1 000 000 runs in 100 000 sessions of ten
/// tenants, 10 messages with one text block each per run, spread over the last 7 days), the UI served by Kestrel on
/// 127.0.0.1 with a tenant filter, and each page requested sequentially. Reports p50/p95 per page.
/// </summary>
/// <remarks>Target (issue: admin UI): p95 ≤ 300 ms for the dashboard, the runs list (first page and a deep page) and a run
/// detail.</remarks>
internal static class AdminPagesBenchmark
{
    private const string Schema = "agentpg_bench_admin";
    private const int Requests = 40;

    public sealed record PageFigures(string Page, LatencySummary Latency);

    public sealed record Result(int Runs, long Messages, TimeSpan SeedTime, IReadOnlyList<PageFigures> Pages);

    public static async Task<Result> RunAsync(BenchEnvironment env, BenchOptions options, Action<string> progress)
    {
        var seeded = Stopwatch.StartNew();
        var builder = new NpgsqlDataSourceBuilder(env.Connection.ConnectionString);
        await using var dataSource = builder.Build();
        await ExecuteAsync(dataSource, $"DROP SCHEMA IF EXISTS {Schema} CASCADE");
        await new AgentPgMigrator(dataSource, Schema).MigrateAsync();
        progress($"admin: seeding {options.AdminRuns:N0} runs and {options.AdminRuns * 10L:N0} messages …");
        await SeedAsync(dataSource, options.AdminRuns);
        seeded.Stop();

        var web = WebApplication.CreateSlimBuilder();
        web.Logging.ClearProviders();
        web.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        web.Services.AddSingleton(dataSource);
        web.Services.AddAgentPg(o => (o.Schema, o.ApiKey) = (Schema, "bench"));
        web.Services.AddAgentPgAdmin();
        await using var app = web.Build();
        app.MapAgentPgAdmin("/agentpg", o =>
        {
            o.AllowAnonymous = true;
            o.TenantFilter = _ => new Dictionary<string, object?> { ["tenant"] = "t3" };
        });
        await app.StartAsync();
        var root = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/') + "/agentpg/";
        using var http = new HttpClient { BaseAddress = new Uri(root), Timeout = TimeSpan.FromMinutes(2) };

        var client = app.Services.GetRequiredService<AgentPgClient>();
        var tenant = new Dictionary<string, object?> { ["tenant"] = "t3" };
        // A deep page: half-way into the tenant's runs (a tenth of all), reached through the read API with the cursor the UI uses.
        var depth = Math.Max(1, options.AdminRuns / 10 / 2 / 100) * 100;
        string? cursor = null;
        for (var skipped = 0; skipped < depth; skipped += Math.Min(1000, depth))
        {
            cursor = (await client.ListRunsAsync(new RunQuery { SessionMetadata = tenant, Limit = Math.Min(1000, depth), Cursor = cursor })).NextCursor;
        }

        var middle = (await client.ListRunsAsync(new RunQuery { SessionMetadata = tenant, Limit = 1, Cursor = cursor })).Items[0];
        var pages = new List<(string Name, string Path)>
        {
            ("dashboard (last 24 h)", "dashboard"),
            ("dashboard (last hour)", "dashboard?window=hour"),
            ("runs, first page", "runs"),
            ($"runs, {depth:N0} rows deep", $"runs?cursor={Uri.EscapeDataString(cursor!)}"),
            ("runs, failed only", "runs?state=failed"),
            ("run detail", $"runs/{middle.Id}"),
            ("session detail (100 messages)", $"sessions/{middle.SessionId}"),
            ("sessions, first page", "sessions"),
        };
        var figures = new List<PageFigures>();
        foreach (var (name, path) in pages)
        {
            progress($"admin: {name} …");
            for (var i = 0; i < 3; i++)
            {
                (await http.GetAsync(path)).EnsureSuccessStatusCode();
            }

            var samples = new LatencySamples();
            for (var i = 0; i < Requests; i++)
            {
                var started = Stopwatch.GetTimestamp();
                using var response = await http.GetAsync(path);
                await response.Content.ReadAsByteArrayAsync();
                samples.Add(LatencySamples.Milliseconds(started, Stopwatch.GetTimestamp()));
                response.EnsureSuccessStatusCode();
            }

            figures.Add(new PageFigures(name, samples.Summarize()));
        }

        await app.StopAsync();
        if (!options.Keep)
        {
            await ExecuteAsync(dataSource, $"DROP SCHEMA IF EXISTS {Schema} CASCADE");
        }

        return new Result(options.AdminRuns, options.AdminRuns * 10L, seeded.Elapsed, figures);
    }

    public static void Print(Result result)
    {
        Console.WriteLine();
        Console.WriteLine($"Admin UI pages over {result.Runs:N0} runs and {result.Messages:N0} messages (seeded in {result.SeedTime.TotalSeconds:0} s), "
                          + $"tenant-filtered, {Requests} sequential requests each (target p95 <= 300 ms):");
        Console.WriteLine($"  {"page",-40} {"p50 ms",8} {"p95 ms",8} {"max ms",8}");
        foreach (var page in result.Pages)
        {
            Console.WriteLine($"  {page.Page,-40} {page.Latency.P50,8:0.0} {page.Latency.P95,8:0.0} {page.Latency.Max,8:0.0}");
        }
    }

    // Rows are written directly (triggers off: they only notify workers and stamp states) in one pass per table.
    // About 1.9 % of runs fail and 1 % are cancelled, spread over every session and so over every tenant (53 and 97 share no
    // factor with the session count; with 50 every failure landed in the sessions of one tenant and the other nine had none).
    private static async Task SeedAsync(NpgsqlDataSource dataSource, int runs)
    {
        var sessions = Math.Max(1, runs / 10);
        var s = Schema;
        await ExecuteAsync(dataSource, $"""
            SET session_replication_role = replica;
            INSERT INTO {s}.agentpg_agents (name, model, tool_names) VALUES ('bench_admin', 'claude-sonnet-4-5', ARRAY[]::text[]);
            CREATE TEMP TABLE bench_sessions AS
                SELECT g AS idx, gen_random_uuid() AS id, now() - make_interval(secs => g * 604800.0 / {sessions}) AS at
                  FROM generate_series(0, {sessions - 1}) g;
            INSERT INTO {s}.agentpg_sessions (id, metadata, created_at, updated_at)
                SELECT id, jsonb_build_object('tenant', 't' || (idx % 10), 'user', 'u' || (idx % 1000)), at, at FROM bench_sessions;
            INSERT INTO {s}.agentpg_runs (session_id, agent_id, run_mode, state, prompt, response_text, input_tokens, output_tokens,
                                          iteration_count, created_at, started_at, finalized_at, error_type, error_message)
                SELECT bs.id, (SELECT id FROM {s}.agentpg_agents LIMIT 1), 'streaming',
                       (CASE WHEN g % 53 = 0 THEN 'failed' WHEN g % 97 = 0 THEN 'cancelled' ELSE 'completed' END)::{s}.agentpg_run_state,
                       'question ' || g, 'answer ' || g, 1200 + g % 800, 150 + g % 90, 1,
                       bs.at + make_interval(secs => (g / {sessions}) * 30), bs.at + make_interval(secs => (g / {sessions}) * 30),
                       bs.at + make_interval(secs => (g / {sessions}) * 30 + 2),
                       CASE WHEN g % 53 = 0 THEN 'model_error' END, CASE WHEN g % 53 = 0 THEN 'overloaded' END
                  FROM generate_series(0, {runs - 1}) g JOIN bench_sessions bs ON bs.idx = g % {sessions}
                 -- In creation order, as an application writes them (the heap then follows the created_at index).
                 ORDER BY bs.at + make_interval(secs => (g / {sessions}) * 30);
            CREATE TEMP TABLE bench_messages AS
                SELECT gen_random_uuid() AS id, r.session_id, r.id AS run_id,
                       (CASE WHEN m % 2 = 0 THEN 'user' ELSE 'assistant' END)::{s}.agentpg_message_role AS role,
                       r.created_at + make_interval(secs => m) AS at, m
                  FROM {s}.agentpg_runs r, generate_series(0, 9) m;
            INSERT INTO {s}.agentpg_messages (id, session_id, run_id, role, content, created_at, updated_at)
                SELECT id, session_id, run_id, role,
                       jsonb_build_array(jsonb_build_object('type', 'text', 'text', 'message text ' || m || ' of a conversation about orders and refunds')),
                       at, at
                  FROM bench_messages ORDER BY at;
            DROP TABLE bench_messages;
            DROP TABLE bench_sessions;
            SET session_replication_role = origin;
            """);
        foreach (var table in new[] { "agentpg_sessions", "agentpg_runs", "agentpg_messages" })
        {
            await ExecuteAsync(dataSource, $"VACUUM ANALYZE {s}.{table}");
        }
    }

    private static async Task ExecuteAsync(NpgsqlDataSource dataSource, string sql)
    {
        await using var command = dataSource.CreateCommand(sql);
        command.CommandTimeout = 3600;
        await command.ExecuteNonQueryAsync();
    }
}
