using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace AgentPg.Chat;

/// <summary>An <see cref="IChatClient"/> over AgentPg runs (see <see cref="AgentPgClient.AsChatClient"/>).</summary>
internal sealed class AgentPgChatClient(AgentPgClient client, Guid agentId) : IChatClient
{
    // No default model: the agent chooses it (each update names it). The agent's id here would be recorded as the requested
    // model by Microsoft.Extensions.AI's OpenTelemetry middleware (gen_ai.request.model).
    private readonly ChatClientMetadata _metadata = new("agentpg");

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        => await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken).ConfigureAwait(false);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        Guid runId;
        long after;
        if (options?.ContinuationToken is { } token)
        {
            (runId, after) = Decode(token);
            await CheckResumableAsync(runId, options.ConversationId, nameof(options), cancellationToken).ConfigureAwait(false);
        }
        else
        {
            var prompt = Prompt(messages, options);
            Guid sessionId;
            if (options?.ConversationId is { } conversationId)
            {
                sessionId = SessionId(conversationId, nameof(options));
            }
            else
            {
                sessionId = await client.NewSessionAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            await CheckHostedToolsAsync(options, cancellationToken).ConfigureAwait(false);
            var instructions = Instructions(messages, options);
            // A JSON schema (GetResponseAsync<T>, ChatResponseFormat.ForJsonSchema) is the run's structured output. Plain JSON
            // without a schema has no counterpart in Claude's API and is not read, like the other generation settings.
            var schema = (options?.ResponseFormat as ChatResponseFormatJson)?.Schema;
            runId = await client.RunFastAsync(sessionId, agentId, prompt,
                instructions is null && schema is null ? null : new RunOptions { AppendInstructions = instructions, OutputSchema = schema },
                cancellationToken).ConfigureAwait(false);
            after = 0;
        }

        // The model that answers is the agent's (ChatOptions.ModelId does not choose it): every update names it.
        var modelId = await ModelAsync(cancellationToken).ConfigureAwait(false);
        var responseId = runId.ToString();
        var text = new StreamedText();
        // An execution starts again after a failed attempt, a snooze or its instance's crash (a ToolCallStartedEvent each time);
        // it is still one call of the model's: one FunctionCallContent per CallId.
        var startedCalls = new HashSet<Guid>();
        // From the start even when resuming: what the caller already received (the events up to `after`) decides which part of
        // a stored answer is still missing. The events are shared with every watcher of the run, so this reads nothing more.
        await foreach (var e in client.WatchRunAsync(runId, 0, cancellationToken).ConfigureAwait(false))
        {
            if (e.RunId != runId)
            {
                // Delegated agents work inside their own tool call; their progress is not the answer.
                continue;
            }

            var updates = e switch
            {
                TextDeltaEvent d => One(Update(ChatRole.Assistant, new TextContent(text.Add(d)), $"{runId}:{d.IterationNumber}")),
                ThinkingDeltaEvent t => One(Update(ChatRole.Assistant, new TextReasoningContent(text.Add(t)), $"{runId}:{t.IterationNumber}")),
                IterationStartedEvent i => text.Start(i.IterationNumber),
                // The stored answer is authoritative: the part its deltas did not bring (all of it when the watch started after
                // the model's stream ended).
                MessageStoredEvent { Message: { Role: MessageRole.Assistant } message } => Remainder(text.Stored(message), runId),
                ToolCallStartedEvent s when startedCalls.Add(s.ToolExecutionId) => One(Update(ChatRole.Assistant, new FunctionCallContent(s.ToolExecutionId.ToString(), s.ToolName, Arguments(s.Input))
                {
                    InformationalOnly = true,
                }, null)),
                // The request id is the tool execution's id: decide with ApproveToolCallAsync / RejectToolCallAsync (from any client).
                ApprovalRequestedEvent a => One(Update(ChatRole.Assistant, new ToolApprovalRequestContent(a.ToolExecutionId.ToString(),
                    new FunctionCallContent(a.ToolExecutionId.ToString(), a.ToolName, Arguments(a.Input)) { InformationalOnly = true }), null)),
                ToolCallCompletedEvent c => One(Update(ChatRole.Tool, new FunctionResultContent(c.ToolExecutionId.ToString(), c.Output), null)),
                RunFinishedEvent f => One(Finish(f)),
                _ => null,
            };
            if (updates is null || e.Sequence <= after)
            {
                continue;
            }

            foreach (var update in updates)
            {
                update.ResponseId = responseId;
                update.ModelId = modelId;
                update.ConversationId = e.SessionId.ToString();
                update.CreatedAt = e.Timestamp;
                update.ContinuationToken = e is RunFinishedEvent ? null : Encode(runId, e.Sequence);
                yield return update;
            }
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        return serviceKey is not null ? null
            : serviceType == typeof(ChatClientMetadata) ? _metadata
            : serviceType.IsInstanceOfType(this) ? this
            : serviceType == typeof(AgentPgClient) ? client
            : null;
    }

    public void Dispose()
    {
    }

    private static Guid SessionId(string conversationId, string paramName)
        => Guid.TryParse(conversationId, out var sessionId)
            ? sessionId
            : throw new ArgumentException($"ChatOptions.ConversationId '{conversationId}' is not an AgentPg session id (a GUID returned in " +
                "ChatResponse.ConversationId); leave it null to start a new conversation.", paramName);

    /// <summary>A continuation token is caller input that names a run (it is opaque, not secret): it resumes only a run of this
    /// client's agent, and of the conversation the caller names when it names one, so an application that checks the
    /// conversation ids its users send cannot be led into another agent's or conversation's answer.</summary>
    private async Task CheckResumableAsync(Guid runId, string? conversationId, string paramName, CancellationToken cancellationToken)
    {
        var run = await client.GetRunAsync(runId, cancellationToken).ConfigureAwait(false);
        if (run.AgentId != agentId)
        {
            throw new ArgumentException("ChatOptions.ContinuationToken belongs to a run of another agent: resume a stream with the chat client " +
                "of the agent that answered it (AsChatClient with that agent's id).", paramName);
        }

        if (conversationId is not null && SessionId(conversationId, paramName) != run.SessionId)
        {
            throw new ArgumentException("ChatOptions.ContinuationToken belongs to a run of another conversation than ChatOptions.ConversationId: " +
                "pass the token with the conversation id of the response it came from, or without a conversation id.", paramName);
        }
    }

    /// <summary>The hosted tools of <see cref="ChatOptions.Tools"/> (Microsoft.Extensions.AI's markers for a service's own tools)
    /// must be server tools the agent has: the agent defines its tools, and a request cannot add one, so a hosted tool it lacks
    /// is refused before any run is created rather than silently answered without it. One it has changes nothing (its settings
    /// are the agent's). <see cref="AIFunction"/>s stay unread, as before: they run in the caller's process, which AgentPg's
    /// workers cannot call, and the agent's own tools may be any registered tool, which no definition lists.</summary>
    private async Task CheckHostedToolsAsync(ChatOptions? options, CancellationToken cancellationToken)
    {
        if (options?.Tools is not { Count: > 0 } tools || tools.All(t => t is AIFunctionDeclaration))
        {
            return;
        }

        var agent = await client.GetAgentByIdAsync(agentId, cancellationToken).ConfigureAwait(false);
        foreach (var tool in tools.Where(t => t is not AIFunctionDeclaration))
        {
            var (prefix, factory) = tool switch
            {
                HostedWebSearchTool => ("web_search_", "ServerTool.WebSearch()"),
                HostedCodeInterpreterTool => ("code_execution_", "ServerTool.CodeExecution()"),
                _ => ((string?)null, (string?)null),
            };
            if (prefix is null)
            {
                throw new ArgumentException($"ChatOptions.Tools holds a {tool.GetType().Name}, which Claude has no server tool for: an AgentPg " +
                    "chat request can name the agent's web search (HostedWebSearchTool) and code execution (HostedCodeInterpreterTool); " +
                    "the agent's other tools, tool search included, are set on the agent (AgentDefinition.Tools, ServerTools). Remove it " +
                    "from ChatOptions.Tools.", nameof(options));
            }

            if (agent.ServerTools?.Any(t => t.Type.StartsWith(prefix, StringComparison.Ordinal)) != true)
            {
                throw new ArgumentException($"ChatOptions.Tools holds a {tool.GetType().Name}, but the agent '{agent.Name}' has no {prefix.TrimEnd('_')} " +
                    $"server tool, and the agent defines its tools (a request cannot add one): add {factory} to its ServerTools " +
                    "(UpdateAgentAsync), or remove the tool from ChatOptions.Tools.", nameof(options));
            }
        }
    }

    private async Task<string?> ModelAsync(CancellationToken cancellationToken)
    {
        try
        {
            return (await client.GetAgentByIdAsync(agentId, cancellationToken).ConfigureAwait(false)).Model;
        }
        catch (AgentPgException ex) when (ex.Code == AgentPgErrorCode.AgentNotFound)
        {
            // Deleted since the run was created: a resumed stream still gives the run's answer.
            return null;
        }
    }

    /// <summary>The run's prompt: the text of the last message, which must be a user message holding only text. Anything else
    /// would be lost without a word (an image, a history no session holds) or answered again (an earlier user message), so
    /// it is refused before any run is created.</summary>
    private static string Prompt(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        // System messages are the run's added instructions, wherever they are.
        var conversation = messages.Where(m => m.Role != ChatRole.System).ToList();
        if (conversation.Count == 0)
        {
            throw new ArgumentException("The messages contain no user message with text: AgentPg sends the last user message as the run's prompt.",
                nameof(messages));
        }

        var last = conversation[^1];
        if (last.Role != ChatRole.User)
        {
            throw new ArgumentException($"The last message is {(last.Role == ChatRole.Tool ? "a tool" : $"an {last.Role}")} message, and AgentPg sends " +
                "the last message, a new user message, as the run's prompt (an earlier user message would be answered again). The " +
                "session keeps the conversation and AgentPg's workers run the agent's tools themselves: end the messages with the new " +
                "user message.", nameof(messages));
        }

        if (last.Contents.OfType<ToolApprovalResponseContent>().FirstOrDefault() is { } decision)
        {
            throw new ArgumentException($"The user message holds a ToolApprovalResponseContent (request {decision.RequestId}), which the AgentPg " +
                "chat client does not read: decide with AgentPgClient.ApproveToolCallAsync or RejectToolCallAsync (the RequestId is the tool " +
                "execution's id; chat.GetService<AgentPgClient>() returns the client), then resume the stream with the last update's " +
                "ContinuationToken.", nameof(messages));
        }

        if (last.Contents.FirstOrDefault(c => c is not TextContent) is { } other)
        {
            throw new ArgumentException($"The user message holds a {other.GetType().Name}: AgentPg sends the text of the last user message as " +
                "the run's prompt, and cannot send images, files or other content with it. Send text only (for a document, its text).",
                nameof(messages));
        }

        if (string.IsNullOrWhiteSpace(last.Text))
        {
            throw new ArgumentException("The last user message has no text: AgentPg sends it as the run's prompt.", nameof(messages));
        }

        if (options?.ConversationId is null && conversation.Count > 1)
        {
            throw new ArgumentException("The messages hold an earlier conversation, but ChatOptions.ConversationId is null: a new session " +
                "would not hold it, and the agent would answer without it. Pass the ConversationId of the previous response (the session " +
                "keeps the conversation, so the new user message is enough), or send only the new user message to start a conversation.",
                nameof(messages));
        }

        return last.Text;
    }

    /// <summary>The run's added instructions: the text of the system messages (the session keeps the rest of the conversation,
    /// so they are the only earlier messages that are read), then <see cref="ChatOptions.Instructions"/>.</summary>
    private static string? Instructions(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var parts = messages.Where(m => m.Role == ChatRole.System).Select(m => m.Text)
            .Append(options?.Instructions)
            .Where(text => !string.IsNullOrWhiteSpace(text))
            .ToList();
        return parts.Count == 0 ? null : string.Join("\n\n", parts);
    }

    private static ChatResponseUpdate Update(ChatRole role, AIContent content, string? messageId)
        => new(role, [content]) { MessageId = messageId };

    private static ChatResponseUpdate[] One(ChatResponseUpdate update) => [update];

    private static ChatResponseUpdate[]? Remainder((int Iteration, List<AIContent> Contents) remainder, Guid runId)
        => remainder.Contents.Count == 0 ? null : [new(ChatRole.Assistant, remainder.Contents) { MessageId = $"{runId}:{remainder.Iteration}" }];

    private static ChatResponseUpdate Finish(RunFinishedEvent finished)
    {
        if (finished.State != RunState.Completed || finished.Response is not { } response)
        {
            throw new AgentPgException(finished.State == RunState.Cancelled ? AgentPgErrorCode.RunCancelled : AgentPgErrorCode.RunFailed, "chat",
                $"Run {finished.RunId} {(finished.State == RunState.Cancelled ? "was cancelled" : "failed")}: {finished.Error}")
            {
                RunId = finished.RunId,
                SessionId = finished.SessionId,
            };
        }

        var usage = new UsageDetails
        {
            InputTokenCount = response.TotalUsage.InputTokens + response.TotalUsage.CacheReadInputTokens + response.TotalUsage.CacheCreationInputTokens,
            // Cache reads, part of InputTokenCount (Microsoft.Extensions.AI's convention).
            CachedInputTokenCount = response.TotalUsage.CacheReadInputTokens,
            OutputTokenCount = response.TotalUsage.OutputTokens,
            TotalTokenCount = response.TotalUsage.InputTokens + response.TotalUsage.CacheReadInputTokens + response.TotalUsage.CacheCreationInputTokens
                              + response.TotalUsage.OutputTokens,
        };
        return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(usage)])
        {
            FinishReason = response.StopReason switch
            {
                Runs.StopReasons.MaxTokens or Runs.StopReasons.ModelContextWindowExceeded => ChatFinishReason.Length,
                Runs.StopReasons.Refusal => ChatFinishReason.ContentFilter,
                Runs.StopReasons.ToolUse => ChatFinishReason.ToolCalls,
                _ => ChatFinishReason.Stop,
            },
        };
    }

    private static Dictionary<string, object?>? Arguments(JsonElement input)
        => input.ValueKind == JsonValueKind.Object ? input.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone()) : null;

    private static ResponseContinuationToken Encode(Guid runId, long sequence)
    {
        var bytes = new byte[24];
        runId.TryWriteBytes(bytes);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(16), sequence);
        return ResponseContinuationToken.FromBytes(bytes);
    }

    private static (Guid RunId, long Sequence) Decode(ResponseContinuationToken token)
    {
        var bytes = token.ToBytes().Span;
        if (bytes.Length != 24)
        {
            throw new ArgumentException("ChatOptions.ContinuationToken was not issued by an AgentPg chat client (it holds a run id and an event sequence).",
                nameof(token));
        }

        return (new Guid(bytes[..16]), BinaryPrimitives.ReadInt64LittleEndian(bytes[16..]));
    }

    /// <summary>The text and thinking the deltas of the iteration in progress brought, per content block, to tell what part of the
    /// stored answer a caller has not received yet.</summary>
    private sealed class StreamedText
    {
        private readonly Dictionary<int, StringBuilder> _blocks = [];
        private int _iteration;

        public ChatResponseUpdate[]? Start(int iteration)
        {
            // A repeated number is a retried model call: its deltas start over (the text of the failed attempt is not repeated).
            _iteration = iteration;
            _blocks.Clear();
            return null;
        }

        public string Add(TextDeltaEvent delta) => Add(delta.IterationNumber, delta.BlockIndex, delta.Text);

        public string Add(ThinkingDeltaEvent delta) => Add(delta.IterationNumber, delta.BlockIndex, delta.Thinking);

        /// <summary>The part of each text and thinking block of a stored answer that its deltas did not bring.</summary>
        public (int Iteration, List<AIContent> Contents) Stored(Message message)
        {
            var contents = new List<AIContent>();
            for (var i = 0; i < message.Content.Count; i++)
            {
                var block = message.Content[i];
                if (block.Type is not (ContentTypes.Text or ContentTypes.Thinking))
                {
                    // Claude's server tools ran inside the answer: their calls and results come with it, in its order.
                    if (ServerToolContent.From(block) is { } serverContent)
                    {
                        contents.Add(serverContent);
                    }

                    continue;
                }

                var received = _blocks.TryGetValue(i, out var sb) ? sb.ToString() : "";
                TextContent? cited = null;
                // Deltas are a prefix of the stored block (they are published in order from its start); if they are not, the
                // stored text is not repeated: the caller would get it twice.
                if (!string.IsNullOrEmpty(block.Text) && received.Length < block.Text.Length && block.Text.StartsWith(received, StringComparison.Ordinal))
                {
                    var rest = block.Text[received.Length..];
                    contents.Add(block.Type == ContentTypes.Text ? cited = new TextContent(rest) : new TextReasoningContent(rest));
                }

                if (block.Citations.Count > 0)
                {
                    // The sources of the block's text (the deltas carry none): on the rest of its text, or on an empty text
                    // content when the deltas brought all of it.
                    if (cited is null)
                    {
                        contents.Add(cited = new TextContent(""));
                    }

                    cited.Annotations = [.. block.Citations.Select(ServerToolContent.Annotation)];
                }
            }

            _blocks.Clear();
            return (_iteration, contents);
        }

        private string Add(int iteration, int block, string text)
        {
            if (iteration != _iteration)
            {
                _iteration = iteration;
                _blocks.Clear();
            }

            if (!_blocks.TryGetValue(block, out var sb))
            {
                _blocks[block] = sb = new StringBuilder();
            }

            sb.Append(text);
            return text;
        }
    }
}
