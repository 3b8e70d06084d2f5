using System.Diagnostics;
using System.Text;
using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A sample run to its end in its own OS process, as <c>./build.sh sample NAME</c> runs it: the database in
/// <c>AGENTPG_CONNECTION</c> and, without <c>ANTHROPIC_API_KEY</c>, the sample's bundled fake Claude.</summary>
public static class SampleRun
{
    /// <summary>Runs samples/<paramref name="sample"/> with <paramref name="arguments"/> on a database of its own (created
    /// for the run and dropped after it, so samples that use the <c>public</c> schema meet no other test); returns its exit
    /// code and everything it printed. Fails when it has not exited within <paramref name="timeout"/>.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(string sample, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var database = "agentpg_sample_" + sample.ToLowerInvariant() + "_" + Guid.NewGuid().ToString("N")[..8];
        await ExecuteAsync($"CREATE DATABASE \"{database}\"");
        try
        {
            return await RunProcessAsync(sample, arguments,
                new NpgsqlConnectionStringBuilder(TestDatabase.ConnectionString) { Database = database }.ConnectionString, timeout);
        }
        finally
        {
            await ExecuteAsync($"DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
        }
    }

    /// <summary>Runs samples/<paramref name="sample"/> as a user without PostgreSQL would: <c>AGENTPG_CONNECTION</c> names a
    /// server that is not there (a Unix socket in a folder that does not exist, refused at once).</summary>
    public static Task<(int ExitCode, string Output)> RunWithoutPostgreSqlAsync(string sample, IEnumerable<string> arguments, TimeSpan timeout)
        => RunProcessAsync(sample, arguments,
            $"Host=/tmp/agentpg-no-server-{Guid.NewGuid():N};Username=postgres;Database=postgres;Timeout=5", timeout);

    private static async Task<(int ExitCode, string Output)> RunProcessAsync(string sample, IEnumerable<string> arguments, string connectionString,
        TimeSpan timeout)
    {
        var path = WorkerProcess.SamplePath(sample);
        // In the sample's project folder, as `dotnet run --project` starts it: the web samples read their appsettings.json
        // from there (their content root).
        var projectFolder = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, "..", "..", ".."));
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = projectFolder,
        };
        info.ArgumentList.Add(path);
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment.Remove("ANTHROPIC_API_KEY");
        info.Environment["AGENTPG_CONNECTION"] = connectionString;
        var output = new StringBuilder();
        void OnLine(object sender, DataReceivedEventArgs e)
        {
            if (e.Data is not null)
            {
                lock (output)
                {
                    output.AppendLine(e.Data);
                }
            }
        }

        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += OnLine;
        process.ErrorDataReceived += OnLine;
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            lock (output)
            {
                throw new TimeoutException($"samples/{sample} did not exit within {timeout}. Its output:\n{output}");
            }
        }

        // WaitForExit() without a timeout also waits for the redirected output to be read to the end.
        process.WaitForExit();
        lock (output)
        {
            return (process.ExitCode, output.ToString());
        }
    }

    private static async Task ExecuteAsync(string sql)
    {
        await using var command = TestDatabase.DataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }
}
