using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A PostgreSQL cluster of a test's own (tests that restart PostgreSQL must not disturb the shared one). Needs the
/// server binaries: AGENTPG_PG_BIN (set by ./build.sh test) or the newest /usr/lib/postgresql/*/bin.</summary>
public sealed class PrivateCluster : IAsyncDisposable
{
    private readonly string _bin;
    private readonly string _dir;

    private PrivateCluster(string bin, string dir, int port)
    {
        _bin = bin;
        _dir = dir;
        Port = port;
        // Timeout: a stopped server refuses at once; 30 s is for a machine so loaded that opening a connection and loading the
        // types takes longer than 5 s (a worker process's start once failed so, at a load average of 57).
        ConnectionString = $"Host=127.0.0.1;Port={port};Username=postgres;Database=postgres;Maximum Pool Size=50;Timeout=30";
    }

    public int Port { get; }

    public string ConnectionString { get; }

    public static string? BinDirectory()
    {
        if (Environment.GetEnvironmentVariable("AGENTPG_PG_BIN") is { Length: > 0 } configured && File.Exists(Path.Combine(configured, "pg_ctl")))
        {
            return configured;
        }

        return Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "pg_ctl"))).OrderDescending().FirstOrDefault()
            : null;
    }

    public static async Task<PrivateCluster> StartAsync()
    {
        var bin = BinDirectory() ?? throw new InvalidOperationException("No PostgreSQL server binaries found (set AGENTPG_PG_BIN).");
        var dir = Directory.CreateTempSubdirectory("agentpg-private-").FullName;
        var port = FreePort();
        var cluster = new PrivateCluster(bin, dir, port);
        if (Environment.UserName == "root")
        {
            await RunAsync("chown", "postgres", dir);
            await RunAsync("chmod", "755", dir);
        }

        await cluster.PgAsync("initdb", "-D", Path.Combine(dir, "data"), "-U", "postgres", "-A", "trust", "--no-locale", "--no-sync");
        await cluster.StartServerAsync();
        return cluster;
    }

    /// <summary>pg_ctl restart -m fast: every connection is cut, the server comes back on the same port.</summary>
    public Task RestartAsync() => PgAsync("pg_ctl", "-D", Path.Combine(_dir, "data"), "-w", "-t", "60", "-m", "fast", "restart");

    /// <summary>pg_ctl stop: every connection is cut and new ones are refused until <see cref="StartServerAsync"/>. Mode
    /// "fast" shuts down cleanly; "immediate" is a crash (the next start runs crash recovery, which empties UNLOGGED tables).</summary>
    public Task StopServerAsync(string mode = "fast") => PgAsync("pg_ctl", "-D", Path.Combine(_dir, "data"), "-w", "-t", "60", "-m", mode, "stop");

    /// <summary>Starts the server (again) on the cluster's port.</summary>
    public Task StartServerAsync() => PgAsync("pg_ctl", "-D", Path.Combine(_dir, "data"), "-l", Path.Combine(_dir, "log"), "-w", "-t", "60",
        "-o", $"-p {Port} -k {_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200", "start");

    public NpgsqlDataSource CreateDataSource() => NpgsqlDataSource.Create(ConnectionString);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await PgAsync("pg_ctl", "-D", Path.Combine(_dir, "data"), "-m", "immediate", "-w", "stop");
        }
        catch (InvalidOperationException)
        {
        }

        Directory.Delete(_dir, recursive: true);
    }

    private Task PgAsync(string tool, params string[] arguments)
        => Environment.UserName == "root"
            ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_bin, tool), .. arguments])
            : RunAsync(Path.Combine(_bin, tool), arguments);

    private static async Task RunAsync(string file, params string[] arguments)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(90));
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} failed ({process.ExitCode}): {await stdout}{await stderr}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>A test that needs its own PostgreSQL cluster: skipped without server binaries, except under CI.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PrivateClusterFactAttribute : FactAttribute
{
    public PrivateClusterFactAttribute()
    {
        if (PrivateCluster.BinDirectory() is null && !TestDatabase.IsCi)
        {
            Skip = "No PostgreSQL server binaries to start a private cluster (set AGENTPG_PG_BIN).";
        }
    }
}
