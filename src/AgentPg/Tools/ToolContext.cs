using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using Npgsql;

namespace AgentPg;

/// <summary>What a tool knows about the execution it serves.</summary>
public sealed class ToolContext
{
    internal ToolContext(
        Guid runId,
        Guid sessionId,
        Guid agentId,
        Guid toolExecutionId,
        string toolUseId,
        int attempt,
        IReadOnlyDictionary<string, JsonElement> variables,
        NpgsqlTransaction? transaction)
    {
        RunId = runId;
        SessionId = sessionId;
        AgentId = agentId;
        ToolExecutionId = toolExecutionId;
        ToolUseId = toolUseId;
        Attempt = attempt;
        Variables = variables;
        Transaction = transaction;
        IdempotencyKey = "agentpg-tool-" + toolExecutionId.ToString("N");
    }

    /// <summary>Creates a context for calling a tool outside the engine, for example in a unit test of the tool.</summary>
    /// <param name="variables">The run's variables, as <see cref="RunOptions.Variables"/> would pass them; they go through the
    /// same JSON conversion as in a real run, so <see cref="GetVariable{T}"/> behaves the same. <see langword="null"/>: none.</param>
    /// <param name="transaction">The transaction an <see cref="ITransactionalTool"/> would get, or <see langword="null"/>.</param>
    /// <param name="attempt">The attempt number (1 on the first try).</param>
    /// <param name="runId">The run id; <see langword="null"/> for a new random id.</param>
    /// <param name="sessionId">The session id; <see langword="null"/> for a new random id.</param>
    /// <param name="agentId">The agent id; <see langword="null"/> for a new random id.</param>
    /// <param name="toolExecutionId">The tool execution id, which <see cref="IdempotencyKey"/> is derived from;
    /// <see langword="null"/> for a new random id.</param>
    /// <param name="toolUseId">Claude's tool_use id; <see langword="null"/> for a made-up one.</param>
    /// <returns>A context with the given values.</returns>
    /// <exception cref="ArgumentException">A variable cannot be stored as JSON.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="attempt"/> is less than 1.</exception>
    /// <example>
    /// <code>
    /// var output = await new WeatherTool().ExecuteAsync(input,
    ///     ToolContext.Create(new Dictionary&lt;string, object?&gt; { ["tenant_id"] = 42 }), CancellationToken.None);
    /// </code>
    /// </example>
    public static ToolContext Create(
        IReadOnlyDictionary<string, object?>? variables = null,
        NpgsqlTransaction? transaction = null,
        int attempt = 1,
        Guid? runId = null,
        Guid? sessionId = null,
        Guid? agentId = null,
        Guid? toolExecutionId = null,
        string? toolUseId = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attempt, 1);
        var executionId = toolExecutionId ?? Guid.NewGuid();
        return new ToolContext(runId ?? Guid.NewGuid(), sessionId ?? Guid.NewGuid(), agentId ?? Guid.NewGuid(), executionId,
            toolUseId ?? "toolu_" + executionId.ToString("N")[..24], attempt,
            Internal.JsonMapping.ToElementDictionary(Internal.JsonMapping.ToJsonObject(variables, nameof(variables))), transaction);
    }

    /// <summary>Gets the run that asked for the tool.</summary>
    public Guid RunId { get; }

    /// <summary>Gets the run's session.</summary>
    public Guid SessionId { get; }

    /// <summary>Gets the run's agent.</summary>
    public Guid AgentId { get; }

    /// <summary>Gets the tool execution.</summary>
    public Guid ToolExecutionId { get; }

    /// <summary>Gets Claude's id of the tool_use block.</summary>
    public string ToolUseId { get; }

    /// <summary>Gets the attempt number: 1 on the first try, 2 on the first retry …</summary>
    public int Attempt { get; }

    /// <summary>Gets a key that is the same for every attempt of this execution, on every instance, also after a rescue.</summary>
    /// <remarks>Pass it to external systems that deduplicate requests (payment providers, e-mail APIs…).</remarks>
    public string IdempotencyKey { get; }

    /// <summary>Gets the run's variables (<see cref="RunOptions.Variables"/>), as JSON.</summary>
    public IReadOnlyDictionary<string, JsonElement> Variables { get; }

    /// <summary>Gets the transaction of an <see cref="ITransactionalTool"/>; <see langword="null"/> for other tools.</summary>
    public NpgsqlTransaction? Transaction { get; }

    /// <summary>While a tool registered with <c>AddTool&lt;TTool&gt;()</c> runs: what to undo in the services of its DI scope
    /// before the scope is disposed (a pooled <c>DbContext</c> bound to <see cref="Transaction"/> gets its own connection back
    /// before it returns to the pool); <see langword="null"/> when the tool runs in no scope of AgentPg's.</summary>
    internal ToolScopeEnd? ScopeEnd { get; set; }

    /// <summary>Gets a variable converted to <typeparamref name="T"/>.</summary>
    /// <typeparam name="T">The type to convert the JSON value to (for example <see cref="int"/>, <see cref="string"/>, a record).</typeparam>
    /// <param name="name">The variable name.</param>
    /// <returns>The converted value.</returns>
    /// <exception cref="KeyNotFoundException">The run has no such variable.</exception>
    /// <exception cref="InvalidOperationException">The value cannot be converted to <typeparamref name="T"/>.</exception>
    public T GetVariable<T>(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!Variables.TryGetValue(name, out var value))
        {
            throw new KeyNotFoundException($"The run has no variable '{name}'. Pass it in RunOptions.Variables when creating the run.");
        }

        try
        {
            return value.Deserialize<T>(s_json)!;
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException or FormatException)
        {
            throw new InvalidOperationException(
                $"The run variable '{name}' ({value.ValueKind}: {Truncate(value.GetRawText())}) cannot be converted to {typeof(T).Name}.", ex);
        }
    }

    /// <summary>Tries to get a variable converted to <typeparamref name="T"/>.</summary>
    /// <typeparam name="T">The type to convert the JSON value to.</typeparam>
    /// <param name="name">The variable name.</param>
    /// <param name="value">The converted value, when the method returns <see langword="true"/>.</param>
    /// <returns>Whether the variable exists and converts.</returns>
    public bool TryGetVariable<T>(string name, [MaybeNullWhen(false)] out T value)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (Variables.TryGetValue(name, out var element))
        {
            try
            {
                value = element.Deserialize<T>(s_json)!;
                return value is not null || element.ValueKind == JsonValueKind.Null;
            }
            catch (Exception ex) when (ex is JsonException or NotSupportedException or InvalidOperationException or FormatException)
            {
            }
        }

        value = default;
        return false;
    }

    /// <summary>Gets a variable converted to <typeparamref name="T"/>, or a default when it is missing or does not convert.</summary>
    /// <typeparam name="T">The type to convert the JSON value to.</typeparam>
    /// <param name="name">The variable name.</param>
    /// <param name="defaultValue">The value to return otherwise.</param>
    /// <returns>The converted value or <paramref name="defaultValue"/>.</returns>
    public T GetVariableOrDefault<T>(string name, T defaultValue = default!)
        => TryGetVariable<T>(name, out var value) ? value : defaultValue;

    private static string Truncate(string text) => text.Length <= 80 ? text : text[..77] + "...";

    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowReadingFromString,
    };
}
