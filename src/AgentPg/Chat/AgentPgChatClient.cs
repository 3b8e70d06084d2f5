using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace AgentPg.Chat;

/// <summary>An <see cref="IChatClient"/> over AgentPg runs (see <see cref="AgentPgClient.AsChatClient"/>).</summary>
internal sealed class AgentPgChatClient(AgentPgClient client, Guid agentId) : IChatClient
{
    private readonly ChatClientMetadata _metadata = new("agentpg", null, agentId.ToString());

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
        }
        else
        {
            var prompt = messages.LastOrDefault(m => m.Role == ChatRole.User)?.Text;
            if (string.IsNullOrWhiteSpace(prompt))
            {
                throw new ArgumentException("The messages contain no user message with text: AgentPg sends the last user message as the run's prompt.",
                    nameof(messages));
            }

            Guid sessionId;
            if (options?.ConversationId is { } conversationId)
            {
                if (!Guid.TryParse(conversationId, out sessionId))
                {
                    throw new ArgumentException($"ChatOptions.ConversationId '{conversationId}' is not an AgentPg session id (a GUID returned in " +
                        "ChatResponse.ConversationId); leave it null to start a new conversation.", nameof(options));
                }
            }
            else
            {
                sessionId = await client.NewSessionAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            runId = await client.RunFastAsync(sessionId, agentId, prompt, cancellationToken: cancellationToken).ConfigureAwait(false);
            after = 0;
        }

        var responseId = runId.ToString();
        await foreach (var e in client.WatchRunAsync(runId, after, cancellationToken).ConfigureAwait(false))
        {
            if (e.RunId != runId)
            {
                // Delegated agents work inside their own tool call; their progress is not the answer.
                continue;
            }

            var update = e switch
            {
                TextDeltaEvent d => Update(ChatRole.Assistant, new TextContent(d.Text), $"{runId}:{d.IterationNumber}"),
                ThinkingDeltaEvent t => Update(ChatRole.Assistant, new TextReasoningContent(t.Thinking), $"{runId}:{t.IterationNumber}"),
                ToolCallStartedEvent s => Update(ChatRole.Assistant, new FunctionCallContent(s.ToolExecutionId.ToString(), s.ToolName, Arguments(s.Input))
                {
                    InformationalOnly = true,
                }, null),
                ToolCallCompletedEvent c => Update(ChatRole.Tool, new FunctionResultContent(c.ToolExecutionId.ToString(), c.Output), null),
                RunFinishedEvent f => Finish(f),
                _ => null,
            };
            if (update is null)
            {
                continue;
            }

            update.ResponseId = responseId;
            update.ConversationId = e.SessionId.ToString();
            update.CreatedAt = e.Timestamp;
            update.ContinuationToken = e is RunFinishedEvent ? null : Encode(runId, e.Sequence);
            yield return update;
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

    private static ChatResponseUpdate Update(ChatRole role, AIContent content, string? messageId)
        => new(role, [content]) { MessageId = messageId };

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
            OutputTokenCount = response.TotalUsage.OutputTokens,
            TotalTokenCount = response.TotalUsage.InputTokens + response.TotalUsage.CacheReadInputTokens + response.TotalUsage.CacheCreationInputTokens
                              + response.TotalUsage.OutputTokens,
        };
        return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(usage)])
        {
            FinishReason = response.StopReason switch
            {
                "max_tokens" or "model_context_window_exceeded" => ChatFinishReason.Length,
                "refusal" => ChatFinishReason.ContentFilter,
                "tool_use" => ChatFinishReason.ToolCalls,
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
}
