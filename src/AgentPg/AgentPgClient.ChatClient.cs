namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Gets a Microsoft.Extensions.AI <see cref="Microsoft.Extensions.AI.IChatClient"/> that answers with an AgentPg agent:
    /// each call is a durable streaming run in an AgentPg session.</summary>
    /// <param name="agentId">The agent that answers.</param>
    /// <returns>A chat client; disposing it does not dispose this client.</returns>
    /// <remarks>
    /// <para><see cref="Microsoft.Extensions.AI.ChatOptions.ConversationId"/> names the session (a new one is created when it is
    /// absent, and its id is returned in <see cref="Microsoft.Extensions.AI.ChatResponse.ConversationId"/>). The session holds the
    /// conversation, so each call sends only the last user message as the run's prompt: the messages must end with it, it must
    /// hold text only, and without a conversation id it must be the only message besides system messages (an
    /// <see cref="ArgumentException"/> says so otherwise, before any run is created). The text of the system messages and
    /// <see cref="Microsoft.Extensions.AI.ChatOptions.Instructions"/> are appended to the agent's system prompt for that run
    /// (<see cref="RunOptions.AppendInstructions"/>). The agent chooses the model, tools and limits: the other chat options
    /// are not read, and each update's <see cref="Microsoft.Extensions.AI.ChatResponseUpdate.ModelId"/> is the agent's model —
    /// except that a <see cref="Microsoft.Extensions.AI.HostedWebSearchTool"/> or
    /// <see cref="Microsoft.Extensions.AI.HostedCodeInterpreterTool"/> in <see cref="Microsoft.Extensions.AI.ChatOptions.Tools"/>
    /// must be a server tool the agent has (<see cref="AgentDefinition.ServerTools"/>), and any other hosted tool is refused
    /// (an <see cref="ArgumentException"/>, before any run is created). Claude's server tool calls and results come as
    /// Microsoft.Extensions.AI's hosted-tool contents, and citations as
    /// <see cref="Microsoft.Extensions.AI.CitationAnnotation"/>s (docs/tools.md, "Through Microsoft.Extensions.AI").</para>
    /// <para>Responses are streamed through <see cref="WatchRunAsync"/>: the agent's tool calls appear as
    /// <see cref="Microsoft.Extensions.AI.FunctionCallContent"/>/<see cref="Microsoft.Extensions.AI.FunctionResultContent"/>
    /// (already executed by AgentPg's workers), and every update carries a continuation token (the run id and the event
    /// sequence): pass it as <see cref="Microsoft.Extensions.AI.ChatOptions.ContinuationToken"/> to resume an interrupted stream
    /// where it stopped, from any process. A token resumes only a run of this chat client's agent and, when
    /// <see cref="Microsoft.Extensions.AI.ChatOptions.ConversationId"/> is set too, only a run of that conversation (an
    /// <see cref="ArgumentException"/> otherwise): the token is opaque but not secret, so an application that accepts tokens and
    /// conversation ids from its users checks the conversation id (for example against the tenant, with
    /// <see cref="ListSessionsAsync"/>) and passes both.</para>
    /// <para>Some worker (any started client) must process the runs; this client does not need to be started.</para>
    /// </remarks>
    public Microsoft.Extensions.AI.IChatClient AsChatClient(Guid agentId) => new Chat.AgentPgChatClient(this, agentId);
}
