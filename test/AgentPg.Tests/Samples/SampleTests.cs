using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Samples;

/// <summary>The samples the README sends newcomers to, run the way <c>./build.sh sample NAME</c> runs them (their own process,
/// the bundled fake Claude), each on a database of its own: they finish, exit 0 and show what they promise. WorkerHost's
/// demo runs here; its worker mode is driven by the crash tests, and StreamingChat by StreamingChatSampleTests.</summary>
public sealed class SampleTests
{
    public static TheoryData<string, string[], string[]> Samples => new()
    {
        {
            "Quickstart", [],
            ["calculate({\"a\": 17, \"b\": 23, \"operation\": \"*\"}) = 391", "get_weather({\"city\": \"Paris\"}) = Paris:", "stop reason end_turn",
             "holds 4 messages: user [text] → assistant [text, tool_use, tool_use] → user [tool_result, tool_result] → assistant [text]"]
        },
        { "Quickstart", ["--batch"], ["calculate({\"a\": 17, \"b\": 23, \"operation\": \"*\"}) = 391", "stop reason end_turn"] },
        {
            "Hierarchy", [],
            ["Answer: Plan: Engineering: Login API done; login-api: 128 tests passed | Design:", "was cancelled.",
             "tool_result \"cancelled\"", "3. The session carries on"]
        },
        {
            "Approvals", [],
            ["Run state while waiting: PendingTools", "Tool output: refunded 60.00 EUR on order A-1001",
             "The tool call was rejected by the approver: already refunded once"]
        },
        // The sample's first compaction comes at about turn 20.
        { "LongConversation", ["22"], ["compaction: ", "Done: 1 compactions", "read from the cache"] },
        // The bundled C# MCP server (the default, server-everything, needs npx and is driven by ServerEverythingTests).
        { "McpTools", ["--csharp"], ["The tools said: Echo: Hello from AgentPg / The sum of 17 and 25 is 42."] },
        {
            "WebApi", ["--smoke"],
            ["reserve_stock returned \"reserved 3 x espresso beans\"", "Healthy",
             // Bad input is a 400 with problem details, never an empty body or a 500.
             "bad input (malformed JSON): 400 application/problem+json", "bad input (quantity as text): 400 application/problem+json",
             "bad input (no item): 400 application/problem+json", "bad input (a NUL in the item): 400 application/problem+json"]
        },
        { "AdminUi", ["--smoke"], ["admin UI: signed in as ann (tenant acme), dashboard and completed runs listed"] },
        // The demo the README runs with ./build.sh sample WorkerHost (the crash tests drive its --connection mode only).
        {
            "WorkerHost", [],
            ["worker    answered after 2 model calls: Here is what I found: get_weather returned \"Oslo: 14 °C, light wind\".",
             "get_weather returned \"Lisbon: 14 °C, light wind\".", "STOPPED "]
        },
    };

    /// <summary>The samples a newcomer runs with <c>dotnet run</c>, without PostgreSQL: the sample says what is wrong and
    /// what to do, and exits 1, instead of dying of an unhandled exception.</summary>
    public static TheoryData<string, string[]> SamplesWithoutPostgreSql => new()
    {
        { "Quickstart", [] }, { "Hierarchy", [] }, { "Approvals", [] }, { "LongConversation", ["22"] }, { "WebApi", ["--smoke"] },
        { "StreamingChat", ["--smoke"] },
    };

    [Theory]
    [MemberData(nameof(SamplesWithoutPostgreSql))]
    public async Task Sample_WithoutPostgreSql_SaysIsPostgreSqlRunningAndExits1(string sample, string[] arguments)
    {
        var (exitCode, output) = await SampleRun.RunWithoutPostgreSqlAsync(sample, arguments, TimeSpan.FromMinutes(2));

        Assert.True(exitCode == 1, $"samples/{sample} exited with {exitCode}:\n{output}");
        Assert.Contains("failed: PostgreSQL error: ", output, StringComparison.Ordinal);
        Assert.Contains("Is PostgreSQL running?", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", output, StringComparison.Ordinal);
    }

    [DatabaseTheory]
    [MemberData(nameof(Samples))]
    public async Task Sample_RunsToTheEndAndShowsWhatItPromises(string sample, string[] arguments, string[] expected)
    {
        var (exitCode, output) = await SampleRun.RunAsync(sample, arguments, TimeSpan.FromMinutes(3));

        Assert.True(exitCode == 0, $"samples/{sample} {string.Join(' ', arguments)} exited with {exitCode}:\n{output}");
        foreach (var line in expected)
        {
            Assert.True(output.Contains(line, StringComparison.Ordinal), $"samples/{sample} did not print \"{line}\":\n{output}");
        }
    }
}
