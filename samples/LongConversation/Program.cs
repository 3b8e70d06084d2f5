// AgentPg long conversation: one session, many turns, each with a tool call whose output is long. Automatic compaction
// keeps the conversation inside a (deliberately small) context window; automatic prompt caching makes every request read
// the previous one's prefix. Prints, per turn, the tokens sent, the share read from the cache, and each compaction.
//
//   ./build.sh sample LongConversation [turns]        a throwaway PostgreSQL, then this program (default 100 turns)
//   dotnet run --project samples/LongConversation     the database in AGENTPG_CONNECTION
//
// It always runs against the bundled fake Claude (FakeClaudeServer), which enforces the window and keeps a prompt cache
// the way the real API does, so it costs nothing and works offline.

using AgentPg;
using AgentPg.Testing;
using Npgsql;

var turns = args.Length > 0 && int.TryParse(args[0], out var n) && n > 0 ? n : 100;
var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION") is { Length: > 0 } configured
    ? configured
    : "Host=127.0.0.1;Username=postgres;Database=postgres";
const int window = 20_000;

await using var dataSource = NpgsqlDataSource.Create(connectionString);
try
{
    await new AgentPgMigrator(dataSource).MigrateAsync();
}
catch (NpgsqlException ex)
{
    // The first statement that needs the database: say what to do instead of a stack trace.
    Console.Error.WriteLine($"LongConversation failed: PostgreSQL error: {ex.Message}");
    Console.Error.WriteLine("Is PostgreSQL running? Set AGENTPG_CONNECTION, or use ./build.sh sample LongConversation for a throwaway database.");
    return 1;
}
await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
{
    ContextWindow = window,
    RecordRequests = false,
    Responder = request => request.SystemText.StartsWith("You summarise conversations", StringComparison.Ordinal)
        ? FakeReply.Text("The user is reading a manual page by page; every page so far was fetched and summarised in one line.")
        : request.ToolResults.Count == 0
            ? FakeReply.ToolUse("read_page", new { page = request.LastUserText.Length })
            : FakeReply.Text($"Page read: {request.ToolResults[0].Content[..20]}…"),
});

var compactions = 0;
await using var client = AgentPgClient.Create(dataSource, new AgentPgOptions
{
    ApiKey = claude.ApiKey,
    BaseUrl = claude.BaseUrl,
    AutoCompaction = true,
    Compaction = new CompactionOptions { MaxTokensForModel = window, ProtectedTokens = 4_000, PreserveLastN = 6, TargetTokens = 8_000 },
    Hooks = new AgentPgHooks
    {
        OnAfterCompaction = (result, _) =>
        {
            Interlocked.Increment(ref compactions);
            Console.WriteLine($"        compaction: {result.OriginalTokens} → {result.CompactedTokens} tokens " +
                              (result.SummaryCreated ? $"({result.MessagesRemoved} messages summarised)" : $"({result.MessagesPruned} tool outputs pruned)"));
            return Task.CompletedTask;
        },
    },
});
client.RegisterTool(FunctionTool.Create("read_page", "Reads one page of the manual.", (int page) => $"Page {page}: " + new string('·', 1500)));
await client.StartAsync();
var agent = await client.GetOrCreateAgentAsync(new AgentDefinition
{
    Name = "long-conversation-sample",
    Model = "claude-sonnet-4-5",
    SystemPrompt = "You read a long manual with the user, one page per turn. " + string.Concat(Enumerable.Repeat("Quote the page you read. ", 200)),
    Tools = ["read_page"],
});
var session = await client.NewSessionAsync();
Console.WriteLine($"Session {session}: {turns} turns, context window {window} tokens, compaction from " +
                  $"{client.Options.Compaction.TriggerTokens} tokens");
Console.WriteLine(" turn   iterations   input tokens   cache read   share");
long totalInput = 0, totalRead = 0;
for (var turn = 1; turn <= turns; turn++)
{
    var response = await client.RunFastSyncAsync(session, agent.Id, $"Turn {turn}: read the next page.");
    var input = response.Usage.InputTokens + response.Usage.CacheReadInputTokens + response.Usage.CacheCreationInputTokens;
    totalInput += input;
    totalRead += response.Usage.CacheReadInputTokens;
    Console.WriteLine($"{turn,5}   {response.IterationCount,10}   {input,12}   {response.Usage.CacheReadInputTokens,10}   {(double)response.Usage.CacheReadInputTokens / input,5:P0}");
}

var stats = await client.GetCompactionStatsAsync(session);
Console.WriteLine($"Done: {compactions} compactions; the conversation now holds {stats.TotalMessages} messages ({stats.TotalTokens} tokens); " +
                  $"{(double)totalRead / totalInput:P0} of all input tokens were read from the cache.");
return 0;
