using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;

namespace AgentPg.Soak;

/// <summary>A soak worker in its own OS process (this executable in worker mode), which the chaos loop kills (SIGKILL),
/// freezes (SIGSTOP), thaws (SIGCONT) or stops (SIGTERM).</summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly string _logPath;

    private ChildProcess(Process process, string instanceId, string logPath)
    {
        _process = process;
        InstanceId = instanceId;
        _logPath = logPath;
    }

    public string InstanceId { get; }

    public bool HasExited => _process.HasExited;

    public bool Frozen { get; private set; }

    public static async Task<ChildProcess> StartAsync(string instanceId, string logDirectory, IEnumerable<string> workerArguments, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
        {
            info.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        }

        info.ArgumentList.Add("worker");
        foreach (var a in workerArguments)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment.Remove("ANTHROPIC_API_KEY");
        var logPath = Path.Combine(logDirectory, instanceId + ".log");
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var child = new ChildProcess(process, instanceId, logPath);
        process.OutputDataReceived += (_, e) => child.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => child.OnLine(e.Data);
        process.Exited += (_, _) => child._ready.TrySetException(new InvalidOperationException($"worker {instanceId} exited before it was ready (log: {logPath})"));
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await child._ready.Task.WaitAsync(timeout);
        }
        catch
        {
            await child.DisposeAsync();
            throw;
        }

        return child;
    }

    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    public void Freeze()
    {
        Signal(19);
        Frozen = true;
    }

    public void Thaw()
    {
        Signal(18);
        Frozen = false;
    }

    public async Task StopAsync(TimeSpan timeout)
    {
        if (_process.HasExited)
        {
            return;
        }

        if (Frozen)
        {
            Thaw();
        }

        Signal(15);
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            await KillAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            if (Frozen)
            {
                Thaw();
            }

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

        lock (_logPath)
        {
            File.AppendAllText(_logPath, line + Environment.NewLine);
        }

        if (line.StartsWith("READY ", StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }
    }

    private void Signal(int signal)
    {
        if (Kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code; one libc call is fine.
    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
#pragma warning restore SYSLIB1054
}
