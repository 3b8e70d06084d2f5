using System.Diagnostics;
using System.Globalization;

namespace AgentPg.Benchmarks;

/// <summary>CPU time spent by this process (the application: AgentPg and the fake Claude), by its exited children
/// (pgbench), and by the PostgreSQL cluster (the postmaster and its backends), from <c>/proc</c>.</summary>
/// <remarks>
/// CPU per run is what the figures of a shared or small machine are made of: on 2 cores, runs/s can never exceed
/// 2 000 ms / (CPU ms per run of everything involved), and unlike runs/s it barely moves when other work shares the
/// machine. The cluster's CPU is only measured when it runs on this machine and its data directory is known
/// (<c>AGENTPG_PG_DATA</c>, exported by eng/pg.sh) and readable; otherwise it is reported as unknown.
/// </remarks>
internal sealed class CpuMeter
{
    // /proc reports times in USER_HZ, which Linux fixes at 100 for user space.
    private const double MillisecondsPerTick = 10;

    private readonly int? _postmaster = FindPostmaster();

    public Sample Take()
    {
        using var self = Process.GetCurrentProcess();
        var app = self.TotalProcessorTime.TotalMilliseconds;
        var children = ReadStat(Environment.ProcessId) is { } own ? (own[13] + own[14]) * MillisecondsPerTick : double.NaN;
        return new Sample(app, children, ServerMilliseconds(), GC.GetTotalAllocatedBytes());
    }

    private double ServerMilliseconds()
    {
        if (_postmaster is not { } postmaster || ReadStat(postmaster) is not { } main)
        {
            return double.NaN;
        }

        // The postmaster's own time and that of its reaped children (backends that exited), plus every live child.
        var ticks = main[11] + main[12] + main[13] + main[14];
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && ReadStat(pid) is { } stat && stat[1] == postmaster)
            {
                ticks += stat[11] + stat[12];
            }
        }

        return ticks * MillisecondsPerTick;
    }

    private static int? FindPostmaster()
    {
        try
        {
            var data = Environment.GetEnvironmentVariable("AGENTPG_PG_DATA");
            if (string.IsNullOrEmpty(data) || !OperatingSystem.IsLinux())
            {
                return null;
            }

            var first = File.ReadLines(Path.Combine(data, "postmaster.pid")).FirstOrDefault();
            return int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The fields of /proc/PID/stat after the command name, as numbers: index 0 is the state (0 here), ppid is
    /// index 1, utime 11, stime 12, cutime 13, cstime 14.</summary>
    private static long[]? ReadStat(int pid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/stat");
            var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            var values = new long[15];
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = long.TryParse(fields[i], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : 0;
            }

            return values;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <param name="App">This process, in milliseconds.</param>
    /// <param name="Children">Exited children of this process (pgbench), in milliseconds.</param>
    /// <param name="Server">The PostgreSQL cluster, in milliseconds (NaN when unknown).</param>
    /// <param name="AllocatedBytes">Managed bytes allocated by this process so far (every thread: AgentPg, the fake Claude
    /// and the harness), from <see cref="GC.GetTotalAllocatedBytes"/>.</param>
    public readonly record struct Sample(double App, double Children, double Server, long AllocatedBytes)
    {
        public CpuPerRun PerRun(Sample later, long runs) => new(
            (later.App - App) / runs,
            (later.Children - Children) / runs,
            (later.Server - Server) / runs,
            (double)(later.AllocatedBytes - AllocatedBytes) / runs);
    }
}

/// <summary>CPU milliseconds per run, and this process's managed allocations per run (bytes; unlike CPU, they do not
/// depend on how busy the machine is).</summary>
internal readonly record struct CpuPerRun(double App, double Children, double Server, double AppAllocatedBytes = double.NaN);
