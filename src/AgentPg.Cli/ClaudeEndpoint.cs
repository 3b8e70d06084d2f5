using AgentPg.Testing;

namespace AgentPg.Cli;

/// <summary>Where a worker started by the CLI (<c>chat --fake</c>, <c>serve</c>) sends model calls: Claude with
/// ANTHROPIC_API_KEY, or the bundled FakeClaudeServer with its demo model when <c>--fake</c> is given and no key is set.</summary>
internal sealed class ClaudeEndpoint : IAsyncDisposable
{
    private ClaudeEndpoint(FakeClaudeServer? fake) => Fake = fake;

    /// <summary>The fake, when the worker uses it.</summary>
    public FakeClaudeServer? Fake { get; }

    /// <summary>Whether the demo tools are registered (with <c>--fake</c>).</summary>
    public bool DemoTools { get; private init; }

    public string Description => Fake is null ? "Claude (ANTHROPIC_API_KEY)" : $"the bundled fake Claude (demo model) at {Fake.BaseUrl}";

    public static async Task<ClaudeEndpoint> StartAsync(bool fake)
    {
        var hasKey = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY"));
        if (fake && !hasKey)
        {
            var server = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = FakeModels.Demo }).ConfigureAwait(false);
            return new ClaudeEndpoint(server) { DemoTools = true };
        }

        if (!hasKey)
        {
            throw CliException.Usage("no model: set ANTHROPIC_API_KEY for Claude, or pass --fake for the bundled fake Claude (a demo model).");
        }

        return new ClaudeEndpoint(null) { DemoTools = fake };
    }

    /// <summary>Points the options at this endpoint.</summary>
    public void Configure(AgentPgOptions options)
    {
        if (Fake is not null)
        {
            options.ApiKey = Fake.ApiKey;
            options.BaseUrl = Fake.BaseUrl;
        }
        else
        {
            options.ApiKey = Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY");
        }
    }

    /// <summary>With --fake: the named agent, created with the demo tools when it does not exist yet.</summary>
    public static async Task<AgentDefinition> GetOrCreateDemoAgentAsync(AgentPgClient client, string name, CancellationToken cancellationToken)
        => await client.GetOrCreateAgentAsync(new AgentDefinition
        {
            Name = name,
            Model = "claude-sonnet-4-5",
            Description = "Created by agentpg --fake: the demo tools get_weather and calculate.",
            SystemPrompt = "You are a concise assistant. Use the tools for weather and arithmetic.",
            Tools = [.. Names],
        }, cancellationToken).ConfigureAwait(false);

    private static IReadOnlyList<string> Names => Cli.DemoTools.Names;

    public async ValueTask DisposeAsync()
    {
        if (Fake is not null)
        {
            await Fake.DisposeAsync().ConfigureAwait(false);
        }
    }
}
