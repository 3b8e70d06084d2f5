using System.Text.Json;
using Microsoft.Extensions.AI;

namespace AgentPg;

/// <summary>A tool made from a delegate or a Microsoft.Extensions.AI <see cref="AIFunction"/>.</summary>
/// <remarks>
/// The input schema is derived from the function's parameters. A parameter of type <see cref="ToolContext"/> receives the
/// execution's context and a <see cref="CancellationToken"/> parameter its cancellation; neither appears in the schema.
/// The result is returned as is when it is a string, otherwise serialized to JSON. A delegate that returns
/// Microsoft.Extensions.AI content (<see cref="AIContent"/> such as <see cref="DataContent"/>, a list of them) or a
/// <see cref="ToolResult"/> makes a content tool: images and documents reach Claude as content blocks (see
/// <see cref="ToolResult"/>); the same holds for an <see cref="AIFunction"/> whose <c>InvokeAsync</c> returns such objects.
/// </remarks>
public sealed class FunctionTool : IContentTool
{
    private readonly AIFunction _function;

    private FunctionTool(AIFunction function, string? description)
    {
        _function = function;
        Name = function.Name;
        Description = description ?? function.Description ?? "";
        InputSchema = ToolSchema.FromJsonSchema(function.JsonSchema);
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public string Description { get; }

    /// <inheritdoc/>
    public ToolSchema InputSchema { get; }

    /// <inheritdoc/>
    /// <remarks>Set it before the tool is registered.</remarks>
    public bool Strict { get; set; }

    /// <inheritdoc/>
    /// <remarks>Set it before the tool is registered.</remarks>
    public bool EagerInputStreaming { get; set; }

    /// <summary>Creates a tool from a delegate.</summary>
    /// <param name="name">The tool name (<c>^[a-zA-Z0-9_-]{1,64}$</c>).</param>
    /// <param name="description">What the tool does, for Claude.</param>
    /// <param name="function">The delegate, for example <c>(string city) =&gt; $"Sunny in {city}"</c>; it may be async.</param>
    /// <returns>The tool.</returns>
    public static FunctionTool Create(string name, string description, Delegate function)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(description);
        ArgumentNullException.ThrowIfNull(function);
        var options = new AIFunctionFactoryOptions
        {
            Name = name,
            Description = description,
            ConfigureParameterBinding = parameter => parameter.ParameterType == typeof(ToolContext)
                ? new AIFunctionFactoryOptions.ParameterBindingOptions
                {
                    ExcludeFromSchema = true,
                    BindParameter = (_, arguments) => arguments.Context?[typeof(ToolContext)],
                }
                : default,
            // Content and tool results stay objects (AgentPg sends them as blocks); everything else is serialized as by default.
            MarshalResult = static (result, type, _) => ValueTask.FromResult<object?>(result switch
            {
                null => null,
                AIContent or IEnumerable<AIContent> or ToolResult => result,
                _ => JsonSerializer.SerializeToElement(result, type ?? result.GetType(), AIJsonUtilities.DefaultOptions),
            }),
        };
        return new FunctionTool(AIFunctionFactory.Create(function, options), description);
    }

    /// <summary>Creates a tool from an <see cref="AIFunction"/> (for example one made with <c>AIFunctionFactory.Create</c>).</summary>
    /// <param name="function">The function; its name must match Claude's tool-name rule.</param>
    /// <returns>The tool.</returns>
    public static FunctionTool Create(AIFunction function)
    {
        ArgumentNullException.ThrowIfNull(function);
        return new FunctionTool(function, null);
    }

    /// <inheritdoc/>
    public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var result = await InvokeAsync(context, input, cancellationToken).ConfigureAwait(false);
        if (AsToolResult(result) is { } content)
        {
            var output = ToolOutput.From(content);
            return output.IsError ? throw new ToolDiscardException(output.Text) : output.Text;
        }

        return Text(result);
    }

    /// <inheritdoc/>
    public async Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var result = await InvokeAsync(context, input, cancellationToken).ConfigureAwait(false);
        return AsToolResult(result) ?? ToolResult.FromText(Text(result));
    }

    private static ToolResult? AsToolResult(object? result) => result switch
    {
        ToolResult toolResult => toolResult,
        AIContent content => ToolResult.FromContent(content),
        IEnumerable<AIContent> contents => ToolResult.FromContent(contents),
        _ => null,
    };

    private string Text(object? result) => result switch
    {
        null => "",
        string text => text,
        JsonElement { ValueKind: JsonValueKind.String } element => element.GetString() ?? "",
        JsonElement element => element.GetRawText(),
        _ => JsonSerializer.Serialize(result, _function.JsonSerializerOptions),
    };

    private async Task<object?> InvokeAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var arguments = new AIFunctionArguments(StringComparer.Ordinal)
        {
            Context = new Dictionary<object, object?> { [typeof(ToolContext)] = context },
        };
        if (input.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in input.EnumerateObject())
            {
                arguments[property.Name] = property.Value;
            }
        }

        return await _function.InvokeAsync(arguments, cancellationToken).ConfigureAwait(false);
    }
}
