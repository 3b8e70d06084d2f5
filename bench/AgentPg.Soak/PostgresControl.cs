using System.Diagnostics;

namespace AgentPg.Soak;

/// <summary>Restarts the throwaway PostgreSQL cluster started by eng/pg.sh (AGENTPG_PG_BIN, AGENTPG_PG_DATA): pg_ctl
/// restart -m fast cuts every connection and brings the server back on the same port with the same settings.</summary>
internal sealed class PostgresControl(string bin, string data)
{
    public static PostgresControl? FromEnvironment()
    {
        var bin = Environment.GetEnvironmentVariable("AGENTPG_PG_BIN");
        var data = Environment.GetEnvironmentVariable("AGENTPG_PG_DATA");
        return string.IsNullOrEmpty(bin) || string.IsNullOrEmpty(data) ? null : new PostgresControl(bin, data);
    }

    public string LogFile => Path.Combine(Path.GetDirectoryName(Path.GetFullPath(data))!, "server.log");

    public async Task RestartAsync()
    {
        var pgCtl = Path.Combine(bin, "pg_ctl");
        // -l: the server's output goes to the cluster's log file (pg.sh's), not to a pipe of this process.
        string[] arguments = ["-D", data, "-l", LogFile, "-w", "-t", "60", "-m", "fast", "restart"];
        var info = Environment.UserName == "root"
            ? new ProcessStartInfo("runuser") { ArgumentList = { "-u", "postgres", "--", pgCtl } }
            : new ProcessStartInfo(pgCtl);
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(90));
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"pg_ctl restart failed ({process.ExitCode}): {await stdout}{await stderr}");
        }
    }
}
