using Anthropic;
using Anthropic.Core;

namespace AgentPg.Claude;

internal static class ClaudeClients
{
    /// <summary>The official SDK's client for the options' key and base URL, with the handler that lets
    /// <see cref="Runs.ModelRetries"/> own the retries of Claude's error answers (<see cref="ServerRetryAdvice"/>).</summary>
    public static IAnthropicClient Create(AgentPgOptions options)
    {
        var clientOptions = new ClientOptions { ApiKey = options.ApiKey, Handlers = [new ServerRetryAdviceHandler(options.TimeProvider)] };
        if (options.BaseUrl is { } baseUrl)
        {
            clientOptions.BaseUrl = baseUrl;
        }

        return new AnthropicClient(clientOptions);
    }
}
