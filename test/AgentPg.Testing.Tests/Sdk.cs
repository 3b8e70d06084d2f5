using System.Text.Json;
using Anthropic.Models.Messages;

namespace AgentPg.Testing.Tests;

/// <summary>Small helpers for driving the real SDK in tests.</summary>
internal static class Sdk
{
    public const string Model = "claude-sonnet-4-5";

    private static readonly Dictionary<string, JsonElement> s_empty = [];

    public static MessageCreateParams Ask(string text, long maxTokens = 1024) => new()
    {
        Model = Model,
        MaxTokens = maxTokens,
        Messages = [new UserMessageParam(text)],
    };

    /// <summary>A request whose body is exactly <paramref name="json"/>, bypassing the SDK's typed model (for invalid requests).</summary>
    public static MessageCreateParams Raw(string json) =>
        MessageCreateParams.FromRawUnchecked(s_empty, s_empty, JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(json)!);

    public static Tool Tool(string name, string description, params string[] requiredStringProperties) => new()
    {
        Name = name,
        Description = description,
        InputSchema = new InputSchema
        {
            Properties = requiredStringProperties.ToDictionary(p => p, _ => JsonSerializer.SerializeToElement(new { type = "string" })),
            Required = requiredStringProperties,
        },
    };

    public static async Task<List<RawMessageStreamEvent>> CollectAsync(IAsyncEnumerable<RawMessageStreamEvent> stream)
    {
        var events = new List<RawMessageStreamEvent>();
        await foreach (var e in stream)
        {
            events.Add(e);
        }

        return events;
    }

    public static string Text(Message message) =>
        string.Concat(message.Content.Select(b => b.TryPickText(out var text) ? text.Text : ""));

    public static List<ToolUseBlock> ToolUses(Message message) =>
        message.Content.Select(b => b.TryPickToolUse(out var toolUse) ? toolUse : null).OfType<ToolUseBlock>().ToList();

    public static List<string> DeltaTypes(IEnumerable<RawMessageStreamEvent> events) =>
        events.Select(e => e.TryPickContentBlockDelta(out var delta) ? delta.Delta.Json.GetProperty("type").GetString()! : null).OfType<string>().ToList();

    public static List<string> PartialJson(IEnumerable<RawMessageStreamEvent> events) =>
        events.Select(e => e.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickInputJson(out var json) ? json.PartialJson : null).OfType<string>().ToList();
}

/// <summary>Polls a condition until it holds or a deadline passes (never a blind sleep).</summary>
internal static class Eventually
{
    public static async Task<T> UntilAsync<T>(Func<Task<T>> probe, Func<T, bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTimeOffset.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        while (true)
        {
            var value = await probe();
            if (condition(value))
            {
                return value;
            }

            if (DateTimeOffset.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting until {what}; last value: {value}");
            }

            await timer.WaitForNextTickAsync();
        }
    }
}

/// <summary>A clock that moves only when told to (only <see cref="GetUtcNow"/> is faked).</summary>
internal sealed class ManualTimeProvider(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;

    public override DateTimeOffset GetUtcNow() => _now;

    public void Advance(TimeSpan by) => _now += by;
}
