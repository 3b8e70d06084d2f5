using System.Text.Json;
using Microsoft.Extensions.AI;

namespace AgentPg;

/// <summary>Builds the JSON schemas of structured outputs (<see cref="AgentDefinition.OutputSchema"/>,
/// <see cref="RunOptions.OutputSchema"/>) from .NET types.</summary>
public static class StructuredOutput
{
    private static readonly AIJsonSchemaCreateOptions s_inference = new()
    {
        IncludeSchemaKeyword = false,
        TransformOptions = new AIJsonSchemaTransformOptions
        {
            // What Claude's structured outputs ask of a schema: closed objects whose properties are all present (an optional
            // value is a nullable one), and no "default" keyword (kept in the description).
            DisallowAdditionalProperties = true,
            RequireAllProperties = true,
            MoveDefaultKeywordToDescription = true,
        },
    };

    /// <summary>The JSON schema of <typeparamref name="T"/> as Claude's structured outputs take it: every object closed
    /// (<c>"additionalProperties": false</c>) with all its properties required, <c>[Description]</c> attributes as
    /// descriptions, property names as <paramref name="options"/> writes them.</summary>
    /// <typeparam name="T">The type of the answer, usually a record.</typeparam>
    /// <param name="options">The serializer options the answer is read with
    /// (<see cref="Response.Deserialize{T}(JsonSerializerOptions?)"/>); <see langword="null"/> for
    /// <see cref="JsonSerializerOptions.Web"/> (camelCase names).</param>
    /// <returns>The schema, to set as <see cref="AgentDefinition.OutputSchema"/> or <see cref="RunOptions.OutputSchema"/>.</returns>
    /// <example><code>
    /// public sealed record Invoice(string Customer, decimal Total, DateOnly DueDate);
    ///
    /// var agent = await client.CreateAgentAsync(new AgentDefinition
    /// {
    ///     Name = "invoice-reader",
    ///     Model = "claude-sonnet-4-5",
    ///     OutputSchema = StructuredOutput.SchemaFor&lt;Invoice&gt;(),
    /// });
    /// var response = await client.RunFastSyncAsync(session, agent.Id, pdfText);
    /// var invoice = response.Deserialize&lt;Invoice&gt;();
    /// </code></example>
    public static JsonElement SchemaFor<T>(JsonSerializerOptions? options = null)
        => AIJsonUtilities.CreateJsonSchema(typeof(T), serializerOptions: options ?? JsonSerializerOptions.Web, inferenceOptions: s_inference);
}
