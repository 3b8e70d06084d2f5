using Anthropic;
using Anthropic.Core;

namespace AgentPg.Claude;

internal static class ClaudeClients
{
    /// <summary>The official SDK's client for the options' key and base URL.</summary>
    public static IAnthropicClient Create(AgentPgOptions options)
    {
        var clientOptions = new ClientOptions { ApiKey = options.ApiKey };
        if (options.BaseUrl is { } baseUrl)
        {
            clientOptions.BaseUrl = baseUrl;
        }

        return new AnthropicClient(clientOptions);
    }
}
