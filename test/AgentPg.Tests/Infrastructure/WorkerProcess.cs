using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using AgentPg.Testing;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A WorkerHost instance (or another sample) in its own OS process, which tests can kill (SIGKILL), pause (SIGSTOP),
/// resume (SIGCONT) or stop gracefully (SIGTERM).</summary>
public sealed class WorkerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource<string> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly string _readyPrefix;

    private WorkerProcess(Process process, string readyPrefix) => (_process, _readyPrefix) = (process, readyPrefix);

    public string InstanceId { get; private set; } = "";

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>WorkerHost's arguments for a crash test: short heartbeat, instance and leader TTLs and poll intervals (a dead
    /// instance is noticed within seconds), a rescue timeout long enough that only death or a freeze triggers a rescue.</summary>
    /// <param name="connection">The PostgreSQL connection string.</param>
    /// <param name="schema">The AgentPg schema.</param>
    /// <param name="claude">The fake Claude the worker calls.</param>
    /// <param name="name">The start of the instance id (a random suffix follows).</param>
    public static Dictionary<string, string> CrashTestArguments(string connection, string schema, FakeClaudeServer claude, string name) => new()
    {
        ["connection"] = connection,
        ["schema"] = schema,
        ["claude-url"] = claude.BaseUrl,
        ["api-key"] = claude.ApiKey,
        ["instance-id"] = name + "-" + Guid.NewGuid().ToString("N")[..6],
        ["heartbeat-ms"] = "250",
        ["instance-ttl-ms"] = "2000",
        ["leader-ttl-ms"] = "1000",
        ["cleanup-interval-ms"] = "500",
        ["rescue-interval-ms"] = "300",
        ["rescue-timeout-ms"] = "60000",
        ["poll-ms"] = "200",
        ["batch-poll-ms"] = "200",
        ["max-streaming"] = "10",
        ["max-tools"] = "10",
    };

    public static Task<WorkerProcess> StartAsync(IReadOnlyDictionary<string, string> arguments, TimeSpan? timeout = null)
        => StartSampleAsync("WorkerHost", "READY ", arguments, timeout);

    /// <summary>Starts samples/<paramref name="sample"/>; ready when it prints a line starting with <paramref name="readyPrefix"/>,
    /// whose rest becomes <see cref="InstanceId"/> (for WorkerHost) or what the sample announces (StreamingChat: its address).</summary>
    public static async Task<WorkerProcess> StartSampleAsync(string sample, string readyPrefix, IReadOnlyDictionary<string, string> arguments,
        TimeSpan? timeout = null)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(SamplePath(sample));
        foreach (var (name, value) in arguments)
        {
            info.ArgumentList.Add("--" + name);
            info.ArgumentList.Add(value);
        }

        info.Environment.Remove("ANTHROPIC_API_KEY");
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var worker = new WorkerProcess(process, readyPrefix);
        process.OutputDataReceived += (_, e) => worker.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => worker.OnLine(e.Data);
        process.Exited += (_, _) => Task.Run(() =>
        {
            // WaitForExit() without a timeout also waits for the redirected output to be read to the end.
            process.WaitForExit();
            worker._ready.TrySetException(new InvalidOperationException(
                $"The worker process exited with code {process.ExitCode} before it was ready:\n{worker.Output}"));
        });
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        worker.InstanceId = await worker._ready.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
        return worker;
    }

    /// <summary>SIGKILL: the process dies at once, without releasing anything.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    /// <summary>SIGSTOP: the process freezes (no heartbeat, no writes) until <see cref="Resume"/>.</summary>
    public void Pause() => Signal(19);

    /// <summary>SIGCONT.</summary>
    public void Resume() => Signal(18);

    /// <summary>Resumes a paused worker (one paused long enough to be evicted, its held work taken over), waits until its
    /// instance registered again in <paramref name="db"/>'s schema, then stops it gracefully.</summary>
    public async Task ThawAndStopAsync(SchemaFixture db)
    {
        Resume();
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", InstanceId) == 1,
            "the thawed instance to register again");
        await StopAsync();
    }

    /// <summary>SIGTERM: graceful stop; waits for the process to exit.</summary>
    public async Task StopAsync(TimeSpan? timeout = null)
    {
        Signal(15);
        await _process.WaitForExitAsync().WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Resume();
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }

        if (line.StartsWith(_readyPrefix, StringComparison.Ordinal))
        {
            _ready.TrySetResult(line[_readyPrefix.Length..].Trim());
        }
    }

    private void Signal(int signal)
    {
        if (Kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    internal static string SamplePath(string sample)
    {
        // Same configuration as this test assembly: .../test/AgentPg.Tests/bin/<Configuration>/net10.0/
        var testBin = new DirectoryInfo(AppContext.BaseDirectory);
        var configuration = testBin.Parent!.Name;
        var root = testBin.Parent.Parent!.Parent!.Parent!.Parent!.FullName;
        var path = Path.Combine(root, "samples", sample, "bin", configuration, "net10.0", sample + ".dll");
        return File.Exists(path) ? path : throw new FileNotFoundException($"Build samples/{sample} first (dotnet build AgentPg.slnx).", path);
    }

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code in the test project; one libc call is fine.
    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
#pragma warning restore SYSLIB1054
}
