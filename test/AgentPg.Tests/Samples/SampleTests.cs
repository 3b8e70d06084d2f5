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
        { "WebApi", ["--smoke"], ["reserve_stock returned \"reserved 3 x espresso beans\"", "Healthy"] },
        { "AdminUi", ["--smoke"], ["admin UI: signed in as ann (tenant acme), dashboard and completed runs listed"] },
        // The demo the README runs with ./build.sh sample WorkerHost (the crash tests drive its --connection mode only).
        {
            "WorkerHost", [],
            ["worker    answered after 2 model calls: Here is what I found: get_weather returned \"Oslo: 14 °C, light wind\".",
             "get_weather returned \"Lisbon: 14 °C, light wind\".", "STOPPED "]
        },
    };

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
