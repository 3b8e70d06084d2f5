using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using AgentPg.Internal;

namespace AgentPg.Testing;

/// <summary>The context-window rules of a server.</summary>
internal sealed record ModelLimits(int ContextWindow, int ExtendedContextWindow, IReadOnlyDictionary<string, int> ModelWindows, IReadOnlySet<string> AllowedModels)
{
    public const string Context1MBeta = "context-1m-2025-08-07";

    public int WindowFor(string model, IReadOnlyList<string> betas)
    {
        var window = ModelWindows.TryGetValue(model, out var own) ? own : ContextWindow;
        return betas.Contains(Context1MBeta, StringComparer.Ordinal) ? Math.Max(window, ExtendedContextWindow) : window;
    }
}

/// <summary>
/// Validates Messages and count_tokens bodies the way the real API does, with its status codes, error types and (as far
/// as they are known) messages.
/// </summary>
internal static partial class RequestValidator
{
    private const int MaxBreakpoints = 4;

    public static ApiFailure? Validate(JsonElement body, ModelLimits limits, IReadOnlyList<string> betas, bool countTokens, out ParsedMessageRequest? parsed)
    {
        parsed = null;
        if (body.ValueKind != JsonValueKind.Object)
        {
            return ApiFailure.Invalid("The request body must be a JSON object.");
        }

        foreach (var property in body.EnumerateObject())
        {
            if (!(countTokens ? s_countTokensFields : s_messagesFields).Contains(property.Name))
            {
                return ApiFailure.Invalid($"{property.Name}: Extra inputs are not permitted");
            }
        }

        if (!body.TryGetProperty("model", out var modelElement) || modelElement.ValueKind == JsonValueKind.Null)
        {
            return ApiFailure.Invalid("model: Field required");
        }

        if (modelElement.ValueKind != JsonValueKind.String || modelElement.GetString() is not { Length: > 0 } model)
        {
            return ApiFailure.Invalid("model: Input should be a valid string");
        }

        long maxTokens = 0;
        if (!countTokens)
        {
            if (!body.TryGetProperty("max_tokens", out var maxTokensElement) || maxTokensElement.ValueKind == JsonValueKind.Null)
            {
                return ApiFailure.Invalid("max_tokens: Field required");
            }

            if (maxTokensElement.ValueKind != JsonValueKind.Number || !maxTokensElement.TryGetInt64(out maxTokens))
            {
                return ApiFailure.Invalid("max_tokens: Input should be a valid integer");
            }

            if (maxTokens < 1)
            {
                return ApiFailure.Invalid("max_tokens: Input should be greater than or equal to 1");
            }
        }

        var stream = body.TryGetProperty("stream", out var streamElement) && streamElement.ValueKind == JsonValueKind.True;

        if (!body.TryGetProperty("messages", out var messages) || messages.ValueKind == JsonValueKind.Null)
        {
            return ApiFailure.Invalid("messages: Field required");
        }

        if (messages.ValueKind != JsonValueKind.Array)
        {
            return ApiFailure.Invalid("messages: Input should be a valid list");
        }

        if (messages.GetArrayLength() == 0)
        {
            return ApiFailure.Invalid("messages: at least one message is required");
        }

        var failure = ValidateSystem(body, out var systemText);
        var toolsFailure = ValidateTools(body, out var tools);
        var toolChoiceFailure = ValidateToolChoice(body, tools, out var toolChoice);
        var thinkingFailure = ValidateThinking(body, maxTokens, countTokens, out var thinking);
        var turnsFailure = ParseTurns(messages, out var turns);
        failure = failure ?? toolsFailure ?? toolChoiceFailure ?? thinkingFailure ?? ValidateSampling(body, model)
                  ?? ValidateThinkingCompatibility(body, thinking, toolChoice) ?? ValidateEffort(body) ?? ValidateContextManagement(body, betas)
                  ?? ValidateOutputFormat(body)
                  ?? turnsFailure ?? ValidateConversation(turns);
        if (failure is not null)
        {
            return failure;
        }

        var prompt = TokenEstimator.Analyze(body, turns);
        var breakpoints = prompt.Units.Count(u => u.CacheTtl is not null);
        if (breakpoints > MaxBreakpoints)
        {
            return ApiFailure.Invalid(string.Create(CultureInfo.InvariantCulture, $"A maximum of {MaxBreakpoints} blocks with cache_control may be provided. Found {breakpoints}."));
        }

        if (limits.AllowedModels.Count > 0 && !limits.AllowedModels.Contains(model))
        {
            return new ApiFailure(404, "not_found_error", $"model: {model}");
        }

        var window = limits.WindowFor(model, betas);
        if (prompt.TotalTokens > window)
        {
            return ApiFailure.Invalid(string.Create(CultureInfo.InvariantCulture, $"prompt is too long: {prompt.TotalTokens} tokens > {window} maximum"));
        }

        parsed = new ParsedMessageRequest
        {
            Body = body,
            Model = model,
            MaxTokens = maxTokens,
            Stream = stream && !countTokens,
            Turns = turns,
            Tools = tools,
            ToolChoice = toolChoice,
            Thinking = thinking,
            SystemText = systemText,
            Prompt = prompt,
        };
        return null;
    }

    // The top-level fields of a Messages body (SDK 13.12's MessageCreateParams, the sampling parameters it sends as raw
    // body data, and the beta fields); the real API refuses any other with "NAME: Extra inputs are not permitted".
    private static readonly HashSet<string> s_messagesFields = new(StringComparer.Ordinal)
    {
        "model", "max_tokens", "messages", "system", "tools", "tool_choice", "stop_sequences", "metadata", "thinking", "stream",
        "cache_control", "output_config", "service_tier", "container", "inference_geo", "speed", "diagnostics", "temperature",
        "top_k", "top_p", "context_management", "mcp_servers", "output_format",
    };

    // count_tokens takes the prompt, not the generation settings (no max_tokens, stream, sampling, stop_sequences, metadata).
    private static readonly HashSet<string> s_countTokensFields = new(StringComparer.Ordinal)
    {
        "model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control", "output_config", "context_management",
        "mcp_servers", "output_format",
    };

    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$", RegexOptions.CultureInvariant)]
    internal static partial Regex NamePattern();

    [GeneratedRegex("^[a-zA-Z0-9_-]+$", RegexOptions.CultureInvariant)]
    private static partial Regex ToolUseIdPattern();

    /// <summary>The real API refuses a text block (or string content) of whitespace only, wherever it is: Claude itself can
    /// answer with such a block (two newlines before a tool call), which a client must not send back.</summary>
    private const string NonWhitespaceText = "messages: text content blocks must contain non-whitespace text";

    private static ApiFailure? ValidateSystem(JsonElement body, out string systemText)
    {
        systemText = "";
        if (!FakeJson.TryGet(body, "system", out var system))
        {
            return null;
        }

        if (system.ValueKind == JsonValueKind.String)
        {
            systemText = system.GetString()!;
            return null;
        }

        if (system.ValueKind != JsonValueKind.Array)
        {
            return ApiFailure.Invalid("system: Input should be a valid string or a valid list");
        }

        var text = new StringBuilder();
        var index = 0;
        foreach (var block in system.EnumerateArray())
        {
            if (FakeJson.GetString(block, "type") != "text")
            {
                return ApiFailure.Invalid($"system.{index}.type: Input should be 'text'");
            }

            if (FakeJson.GetString(block, "text") is not { } blockText)
            {
                return ApiFailure.Invalid($"system.{index}.text: Field required");
            }

            if (text.Length > 0)
            {
                text.Append('\n');
            }

            text.Append(blockText);
            index++;
        }

        systemText = text.ToString();
        return null;
    }

    // Claude Opus 4.1, the 4.5 and later 4.x models and the 5.x models take temperature or top_p, not both (a dated model
    // id such as claude-sonnet-4-20250514 is Sonnet 4, which takes both).
    [GeneratedRegex("^claude-(opus|sonnet|haiku)-(4-[1-9](?![0-9])|[5-9](?![0-9]))", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase)]
    private static partial Regex OneSamplingParameterModels();

    /// <summary><c>temperature</c> and <c>top_p</c> each from 0 to 1, and not both for the models that refuse that.</summary>
    private static ApiFailure? ValidateSampling(JsonElement body, string model)
    {
        foreach (var name in new[] { "temperature", "top_p" })
        {
            if (!FakeJson.TryGet(body, name, out var value))
            {
                continue;
            }

            if (value.ValueKind != JsonValueKind.Number)
            {
                return ApiFailure.Invalid($"{name}: Input should be a valid number");
            }

            var number = value.GetDouble();
            if (number < 0)
            {
                return ApiFailure.Invalid($"{name}: Input should be greater than or equal to 0");
            }

            if (number > 1)
            {
                return ApiFailure.Invalid($"{name}: Input should be less than or equal to 1");
            }
        }

        return FakeJson.TryGet(body, "temperature", out _) && FakeJson.TryGet(body, "top_p", out _) && OneSamplingParameterModels().IsMatch(model)
            ? ApiFailure.Invalid("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
            : null;
    }

    public const string ContextManagementBeta = "context-management-2025-06-27";

    private static readonly string[] s_contextEdits = ["clear_tool_uses_20250919", "clear_thinking_20251015", "compact_20260112"];

    /// <summary>Claude's context management (context editing), a beta: the field is refused without the beta, and each edit
    /// must be a known type with well-typed settings.</summary>
    /// <summary>Structured outputs: <c>output_config.format</c> is <c>{"type": "json_schema", "schema": {…}}</c>. The schema's
    /// contents are Claude's to judge (which JSON Schema keywords it supports is not checked here).</summary>
    private static ApiFailure? ValidateOutputFormat(JsonElement body)
    {
        if (!FakeJson.TryGet(body, "output_config", out var config))
        {
            return null;
        }

        if (config.ValueKind != JsonValueKind.Object)
        {
            return ApiFailure.Invalid("output_config: Input should be a valid dictionary");
        }

        if (!FakeJson.TryGet(config, "format", out var format) || format.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        var type = format.ValueKind == JsonValueKind.Object ? FakeJson.GetString(format, "type") : null;
        if (type != "json_schema")
        {
            return ApiFailure.UnknownTag("output_config.format", type, ["json_schema"]);
        }

        return FakeJson.TryGet(format, "schema", out var schema) && schema.ValueKind == JsonValueKind.Object
            ? null
            : ApiFailure.Invalid("output_config.format.schema: Field required (a JSON schema object)");
    }

    private static ApiFailure? ValidateContextManagement(JsonElement body, IReadOnlyList<string> betas)
    {
        if (!FakeJson.TryGet(body, "context_management", out var management))
        {
            return null;
        }

        if (!betas.Contains(ContextManagementBeta, StringComparer.Ordinal))
        {
            return ApiFailure.Invalid($"context_management: Extra inputs are not permitted (the field needs the anthropic-beta header {ContextManagementBeta})");
        }

        if (management.ValueKind != JsonValueKind.Object)
        {
            return ApiFailure.Invalid("context_management: Input should be a valid dictionary");
        }

        if (!FakeJson.TryGet(management, "edits", out var edits) || edits.ValueKind != JsonValueKind.Array)
        {
            return ApiFailure.Invalid("context_management.edits: Input should be a valid list");
        }

        var index = 0;
        foreach (var edit in edits.EnumerateArray())
        {
            var type = edit.ValueKind == JsonValueKind.Object ? FakeJson.GetString(edit, "type") : null;
            if (type is null || !s_contextEdits.Contains(type, StringComparer.Ordinal))
            {
                return ApiFailure.UnknownTag(string.Create(CultureInfo.InvariantCulture, $"context_management.edits.{index}"), type, s_contextEdits);
            }

            foreach (var setting in new[] { "trigger", "keep", "clear_at_least" })
            {
                if (FakeJson.TryGet(edit, setting, out var value)
                    && (value.ValueKind != JsonValueKind.Object || !FakeJson.TryGet(value, "value", out var amount) || amount.ValueKind != JsonValueKind.Number
                        || FakeJson.GetString(value, "type") is null))
                {
                    return ApiFailure.Invalid(string.Create(CultureInfo.InvariantCulture,
                        $"context_management.edits.{index}.{setting}: Input should be an object with a 'type' and a numeric 'value'"));
                }
            }

            if (FakeJson.TryGet(edit, "exclude_tools", out var exclude)
                && (exclude.ValueKind != JsonValueKind.Array || exclude.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String)))
            {
                return ApiFailure.Invalid(string.Create(CultureInfo.InvariantCulture, $"context_management.edits.{index}.exclude_tools: Input should be a valid list of strings"));
            }

            index++;
        }

        return null;
    }

    private static ApiFailure? ValidateTools(JsonElement body, out List<FakeTool> tools)
    {
        tools = [];
        if (!FakeJson.TryGet(body, "tools", out var toolsElement))
        {
            return null;
        }

        if (toolsElement.ValueKind != JsonValueKind.Array)
        {
            return ApiFailure.Invalid("tools: Input should be a valid list");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        var index = 0;
        foreach (var tool in toolsElement.EnumerateArray())
        {
            if (tool.ValueKind != JsonValueKind.Object)
            {
                return ApiFailure.Invalid($"tools.{index}: Input should be a valid dictionary");
            }

            var type = FakeJson.GetString(tool, "type");
            var isClientTool = type is null or "custom";
            var tag = isClientTool ? "custom" : type;
            if (FakeJson.GetString(tool, "name") is not { } name)
            {
                return ApiFailure.Invalid($"tools.{index}.{tag}.name: Field required");
            }

            if (!NamePattern().IsMatch(name))
            {
                return ApiFailure.Invalid($"tools.{index}.{tag}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'");
            }

            if (type == MemoryToolType && ValidateMemoryTool(tool, index, name) is { } memoryFailure)
            {
                return memoryFailure;
            }

            if (!isClientTool && type != MemoryToolType && ValidateServerTool(tool, index, type!, name) is { } serverFailure)
            {
                return serverFailure;
            }

            JsonElement? schema = null;
            if (isClientTool)
            {
                if (!FakeJson.TryGet(tool, "input_schema", out var inputSchema))
                {
                    return ApiFailure.Invalid($"tools.{index}.custom.input_schema: Field required");
                }

                if (inputSchema.ValueKind != JsonValueKind.Object)
                {
                    return ApiFailure.Invalid($"tools.{index}.custom.input_schema: Input should be a valid dictionary");
                }

                if (FakeJson.GetString(inputSchema, "type") != "object")
                {
                    return ApiFailure.Invalid($"tools.{index}.custom.input_schema.type: Input should be 'object'");
                }

                schema = inputSchema;
                foreach (var flag in (ReadOnlySpan<string>)["strict", "eager_input_streaming"])
                {
                    if (FakeJson.TryGet(tool, flag, out var value) && value.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                    {
                        return ApiFailure.Invalid($"tools.{index}.custom.{flag}: Input should be a valid boolean");
                    }
                }
            }

            if (!names.Add(name))
            {
                return ApiFailure.Invalid("tools: Tool names must be unique.");
            }

            tools.Add(new FakeTool(name)
            {
                Description = FakeJson.GetString(tool, "description"),
                InputSchema = schema,
                ServerToolType = isClientTool ? null : type,
                DeferLoading = FakeJson.TryGet(tool, "defer_loading", out var defer) && defer.ValueKind == JsonValueKind.True,
                Strict = isClientTool && FakeJson.TryGet(tool, "strict", out var strict) && strict.ValueKind == JsonValueKind.True,
                EagerInputStreaming = isClientTool && FakeJson.TryGet(tool, "eager_input_streaming", out var eager) && eager.ValueKind == JsonValueKind.True,
                Json = tool,
            });
            index++;
        }

        return ValidateDeferLoading(tools);
    }

    /// <summary>The type of Claude's memory tool (client-executed: Claude calls it as <c>memory</c> with a command).</summary>
    internal const string MemoryToolType = "memory_20250818";

    // The fields the memory tool's definition takes (Anthropic SDK 13.12 MemoryTool20250818: name, type, allowed_callers,
    // cache_control, defer_loading, strict); its name is always "memory". No input_schema or description: Claude knows the tool.
    private static readonly HashSet<string> s_memoryToolFields =
        ["type", "name", "allowed_callers", "cache_control", "defer_loading", "strict"];

    private static ApiFailure? ValidateMemoryTool(JsonElement tool, int index, string name)
    {
        if (name != "memory")
        {
            return ApiFailure.Invalid($"tools.{index}.{MemoryToolType}.name: Input should be 'memory'");
        }

        foreach (var property in tool.EnumerateObject())
        {
            if (!s_memoryToolFields.Contains(property.Name))
            {
                return ApiFailure.Invalid($"tools.{index}.{MemoryToolType}.{property.Name}: Extra inputs are not permitted");
            }
        }

        return null;
    }

    // The server tools the fake knows, with the fields each definition takes (Anthropic SDK 13.12: WebSearchTool20250305,
    // WebSearchTool20260209, WebFetchTool20250910, WebFetchTool20260209, CodeExecutionTool20250825, ToolSearchToolRegex20251119,
    // ToolSearchToolBm25) and the one name Claude knows each by. Other typed tools the SDK knows pass unchecked; a type it does not
    // know is refused, as the API refuses an unknown tag.
    private static readonly string[] s_commonServerToolFields = ["type", "name", "allowed_callers", "cache_control", "defer_loading", "strict"];

    private static readonly string[] s_domainFields = ["allowed_domains", "blocked_domains", "max_uses"];

    private static readonly Dictionary<string, (string Name, HashSet<string> Fields)> s_serverTools = new(StringComparer.Ordinal)
    {
        ["web_search_20250305"] = ("web_search", [.. s_commonServerToolFields, .. s_domainFields, "user_location"]),
        ["web_search_20260209"] = ("web_search", [.. s_commonServerToolFields, .. s_domainFields, "user_location"]),
        ["web_fetch_20250910"] = ("web_fetch", [.. s_commonServerToolFields, .. s_domainFields, "citations", "max_content_tokens", "url_sources"]),
        ["web_fetch_20260209"] = ("web_fetch", [.. s_commonServerToolFields, .. s_domainFields, "citations", "max_content_tokens", "url_sources"]),
        ["code_execution_20250825"] = ("code_execution", [.. s_commonServerToolFields]),
        ["tool_search_tool_regex_20251119"] = ("tool_search_tool_regex", [.. s_commonServerToolFields]),
        ["tool_search_tool_regex"] = ("tool_search_tool_regex", [.. s_commonServerToolFields]),
        ["tool_search_tool_bm25_20251119"] = ("tool_search_tool_bm25", [.. s_commonServerToolFields]),
        ["tool_search_tool_bm25"] = ("tool_search_tool_bm25", [.. s_commonServerToolFields]),
    };

    // Typed tools of SDK 13.12 the fake accepts without checking their fields.
    private static readonly HashSet<string> s_otherTypedTools = new(StringComparer.Ordinal)
    {
        "advisor_20260301", "agent_toolset_20260401", "bash_20241022", "bash_20250124", "browser_toolset_20260801", "code_execution_20250522",
        "code_execution_20260120", "code_execution_20260521", "computer_20241022", "computer_20250124", "computer_20251124",
        "computer_toolset_20260801", "multiagent_20261001", "text_editor_20241022", "text_editor_20250124", "text_editor_20250429",
        "text_editor_20250728", "web_fetch_20260309", "web_fetch_20260318", "web_search_20260318",
    };

    private static ApiFailure? ValidateServerTool(JsonElement tool, int index, string type, string name)
    {
        if (!s_serverTools.TryGetValue(type, out var known))
        {
            return s_otherTypedTools.Contains(type)
                ? null
                : ApiFailure.UnknownTag($"tools.{index}", type, ["custom", MemoryToolType, .. s_serverTools.Keys, .. s_otherTypedTools]);
        }

        if (name != known.Name)
        {
            return ApiFailure.Invalid($"tools.{index}.{type}.name: Input should be '{known.Name}'");
        }

        foreach (var property in tool.EnumerateObject())
        {
            if (!known.Fields.Contains(property.Name))
            {
                return ApiFailure.Invalid($"tools.{index}.{type}.{property.Name}: Extra inputs are not permitted");
            }
        }

        if (FakeJson.TryGet(tool, "max_uses", out var maxUses) && maxUses.ValueKind != JsonValueKind.Null
            && (!maxUses.TryGetInt32(out var uses) || uses < 1))
        {
            return ApiFailure.Invalid($"tools.{index}.{type}.max_uses: Input should be greater than 0");
        }

        foreach (var field in (string[])["allowed_domains", "blocked_domains"])
        {
            if (FakeJson.TryGet(tool, field, out var domains) && domains.ValueKind != JsonValueKind.Null
                && (domains.ValueKind != JsonValueKind.Array || domains.EnumerateArray().Any(d => d.ValueKind != JsonValueKind.String)))
            {
                return ApiFailure.Invalid($"tools.{index}.{type}.{field}: Input should be a valid list of strings");
            }
        }

        if (FakeJson.TryGet(tool, "allowed_domains", out var allowed) && allowed.ValueKind != JsonValueKind.Null
            && FakeJson.TryGet(tool, "blocked_domains", out var blocked) && blocked.ValueKind != JsonValueKind.Null)
        {
            return ApiFailure.Invalid($"tools.{index}.{type}: Cannot specify both allowed_domains and blocked_domains");
        }

        if (FakeJson.TryGet(tool, "user_location", out var location) && location.ValueKind != JsonValueKind.Null
            && (location.ValueKind != JsonValueKind.Object || FakeJson.GetString(location, "type") != "approximate"))
        {
            return ApiFailure.Invalid($"tools.{index}.{type}.user_location.type: Input should be 'approximate'");
        }

        return null;
    }

    /// <summary>Tool search: a tool with <c>defer_loading: true</c> needs a tool search tool in the request, which is itself never
    /// deferred, at least one tool is loaded, and a deferred tool takes no <c>cache_control</c> (it is not in the prompt's
    /// prefix).</summary>
    private static ApiFailure? ValidateDeferLoading(List<FakeTool> tools)
    {
        var deferred = tools.Where(t => t.DeferLoading).ToList();
        if (deferred.Count == 0)
        {
            return null;
        }

        var search = tools.FirstOrDefault(t => t.ServerToolType?.StartsWith("tool_search_tool_", StringComparison.Ordinal) == true);
        if (search is null)
        {
            return ApiFailure.Invalid(
                "tools: defer_loading is set on tool '" + deferred[0].Name + "' but no tool search tool (tool_search_tool_regex or tool_search_tool_bm25) was provided.");
        }

        if (search.DeferLoading)
        {
            return ApiFailure.Invalid($"tools: The tool search tool '{search.Name}' cannot have defer_loading set to true.");
        }

        if (deferred.Count == tools.Count)
        {
            return ApiFailure.Invalid("tools: At least one tool must not have defer_loading set to true.");
        }

        return deferred.FirstOrDefault(t => FakeJson.TryGet(t.Json, "cache_control", out _)) is { } cached
            ? ApiFailure.Invalid($"tools: Tool '{cached.Name}' has defer_loading set to true and cannot have cache_control.")
            : null;
    }

    private static ApiFailure? ValidateToolChoice(JsonElement body, List<FakeTool> tools, out JsonElement? toolChoice)
    {
        toolChoice = null;
        if (!FakeJson.TryGet(body, "tool_choice", out var choice))
        {
            return null;
        }

        toolChoice = choice;
        var type = FakeJson.GetString(choice, "type");
        switch (type)
        {
            case "auto" or "none":
                return null;
            case "any":
                return tools.Count == 0 ? ApiFailure.Invalid("tool_choice may only be specified while providing tools.") : null;
            case "tool":
                if (FakeJson.GetString(choice, "name") is not { } name)
                {
                    return ApiFailure.Invalid("tool_choice.tool.name: Field required");
                }

                if (tools.Count == 0)
                {
                    return ApiFailure.Invalid("tool_choice may only be specified while providing tools.");
                }

                return tools.Any(t => t.Name == name)
                    ? null
                    : ApiFailure.Invalid($"tool_choice.tool.name: Tool '{name}' not found in provided tools");
            default:
                return ApiFailure.UnknownTag("tool_choice", type, "auto", "any", "tool", "none");
        }
    }

    private static ApiFailure? ValidateThinking(JsonElement body, long maxTokens, bool countTokens, out JsonElement? thinking)
    {
        thinking = null;
        if (!FakeJson.TryGet(body, "thinking", out var config))
        {
            return null;
        }

        thinking = config;
        var type = FakeJson.GetString(config, "type");
        if (type is "disabled" or "adaptive" or "enabled" && FakeJson.TryGet(config, "display", out var display))
        {
            if (type == "disabled")
            {
                return ApiFailure.Invalid("thinking.disabled.display: Extra inputs are not permitted");
            }

            if (display.ValueKind != JsonValueKind.String || display.GetString() is not ("summarized" or "omitted"))
            {
                return ApiFailure.Invalid($"thinking.{type}.display: Input should be 'summarized' or 'omitted'");
            }
        }

        switch (type)
        {
            case "disabled" or "adaptive":
                return null;
            case "enabled":
                if (!FakeJson.TryGet(config, "budget_tokens", out var budgetElement))
                {
                    return ApiFailure.Invalid("thinking.enabled.budget_tokens: Field required");
                }

                if (!budgetElement.TryGetInt64(out var budget))
                {
                    return ApiFailure.Invalid("thinking.enabled.budget_tokens: Input should be a valid integer");
                }

                if (budget < 1024)
                {
                    return ApiFailure.Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024");
                }

                return !countTokens && budget >= maxTokens
                    ? ApiFailure.Invalid("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size")
                    : null;
            default:
                return ApiFailure.UnknownTag("thinking", type, "enabled", "disabled", "adaptive");
        }
    }

    private const string ThinkingCompatibility =
        " Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility";

    /// <summary>With thinking on (enabled or adaptive), the API refuses a temperature other than 1, top_k, a top_p below 0.95
    /// and a tool_choice that forces tool use.</summary>
    private static ApiFailure? ValidateThinkingCompatibility(JsonElement body, JsonElement? thinking, JsonElement? toolChoice)
    {
        if (thinking is not { } config || FakeJson.GetString(config, "type") is not ("enabled" or "adaptive"))
        {
            return null;
        }

        if (FakeJson.TryGet(body, "temperature", out var temperature) && temperature.GetDouble() != 1)
        {
            return ApiFailure.Invalid("`temperature` may only be set to 1 when thinking is enabled." + ThinkingCompatibility);
        }

        if (FakeJson.TryGet(body, "top_k", out _))
        {
            return ApiFailure.Invalid("`top_k` is not supported when thinking is enabled." + ThinkingCompatibility);
        }

        if (FakeJson.TryGet(body, "top_p", out var topP) && topP.GetDouble() < 0.95)
        {
            return ApiFailure.Invalid("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled." + ThinkingCompatibility);
        }

        return toolChoice is { } choice && FakeJson.GetString(choice, "type") is "any" or "tool"
            ? ApiFailure.Invalid("Thinking may not be enabled when `tool_choice` forces tool use.")
            : null;
    }

    private static readonly string[] s_efforts = ["low", "medium", "high", "xhigh", "max"];

    /// <summary><c>output_config</c> is an object; its <c>effort</c>, when present, one of the API's levels.</summary>
    private static ApiFailure? ValidateEffort(JsonElement body)
    {
        if (!FakeJson.TryGet(body, "output_config", out var config))
        {
            return null;
        }

        if (config.ValueKind != JsonValueKind.Object)
        {
            return ApiFailure.Invalid("output_config: Input should be a valid dictionary");
        }

        return FakeJson.TryGet(config, "effort", out var effort)
               && (effort.ValueKind != JsonValueKind.String || !s_efforts.Contains(effort.GetString(), StringComparer.Ordinal))
            ? ApiFailure.Invalid("output_config.effort: Input should be " + string.Join(", ", s_efforts[..^1].Select(e => "'" + e + "'")) + " or '" + s_efforts[^1] + "'")
            : null;
    }

    private static ApiFailure? ParseTurns(JsonElement messages, out List<Turn> turns)
    {
        turns = [];
        var count = messages.GetArrayLength();
        var index = 0;
        foreach (var message in messages.EnumerateArray())
        {
            if (message.ValueKind != JsonValueKind.Object)
            {
                return ApiFailure.Invalid($"messages.{index}: Input should be a valid dictionary");
            }

            if (!FakeJson.TryGet(message, "role", out var roleElement))
            {
                return ApiFailure.Invalid($"messages.{index}.role: Field required");
            }

            var role = roleElement.ValueKind == JsonValueKind.String ? roleElement.GetString() : null;
            if (role is not ("user" or "assistant" or "system"))
            {
                return ApiFailure.Invalid($"messages.{index}.role: Input should be 'user' or 'assistant'");
            }

            if (!FakeJson.TryGet(message, "content", out var content))
            {
                return ApiFailure.Invalid($"messages.{index}.content: Field required");
            }

            var isFinalAssistant = role == "assistant" && index == count - 1;
            var blocks = new List<TurnBlock>();
            if (content.ValueKind == JsonValueKind.String)
            {
                var text = content.GetString()!;
                if (text.Length == 0 && !isFinalAssistant)
                {
                    return ApiFailure.Invalid($"messages.{index}: all messages must have non-empty content except for the optional final assistant message");
                }

                if (text.Length > 0 && string.IsNullOrWhiteSpace(text))
                {
                    return ApiFailure.Invalid(NonWhitespaceText);
                }

                blocks.Add(new TurnBlock(index, -1, "text", content));
            }
            else if (content.ValueKind == JsonValueKind.Array)
            {
                if (content.GetArrayLength() == 0 && !isFinalAssistant)
                {
                    return ApiFailure.Invalid($"messages.{index}: all messages must have non-empty content except for the optional final assistant message");
                }

                var blockIndex = 0;
                foreach (var block in content.EnumerateArray())
                {
                    var failure = ValidateBlock(block, index, blockIndex, role, out var type);
                    if (failure is not null)
                    {
                        return failure;
                    }

                    blocks.Add(new TurnBlock(index, blockIndex, type, block));
                    blockIndex++;
                }
            }
            else
            {
                return ApiFailure.Invalid($"messages.{index}.content: Input should be a valid string or a valid list");
            }

            // "system" messages mid-conversation are tolerated (the SDK can send them) and stay out of the turns.
            if (role != "system")
            {
                if (turns.Count > 0 && turns[^1].Role == role)
                {
                    turns[^1].Blocks.AddRange(blocks);
                    turns[^1].LastMessageIndex = index;
                }
                else
                {
                    var turn = new Turn(role, index);
                    turn.Blocks.AddRange(blocks);
                    turns.Add(turn);
                }
            }

            index++;
        }

        return turns.Count == 0 ? ApiFailure.Invalid("messages: at least one message is required") : null;
    }

    private static ApiFailure? ValidateBlock(JsonElement block, int messageIndex, int blockIndex, string role, out string type)
    {
        type = "";
        var path = $"messages.{messageIndex}.content.{blockIndex}";
        if (block.ValueKind != JsonValueKind.Object)
        {
            return ApiFailure.Invalid($"{path}: Input should be a valid dictionary");
        }

        if (FakeJson.GetString(block, "type") is not { } blockType)
        {
            return ApiFailure.Invalid($"{path}.type: Field required");
        }

        type = blockType;
        switch (blockType)
        {
            case "text":
                if (FakeJson.GetString(block, "text") is not { } text)
                {
                    return ApiFailure.Invalid($"{path}.text.text: Field required");
                }

                return text.Length == 0 ? ApiFailure.Invalid("messages: text content blocks must be non-empty")
                    : string.IsNullOrWhiteSpace(text) ? ApiFailure.Invalid(NonWhitespaceText)
                    : ValidateCitations(block, $"{path}.text");
            case "tool_use":
                if (role != "assistant")
                {
                    return ApiFailure.Invalid($"{path}: `tool_use` blocks can only be in `assistant` messages");
                }

                if (FakeJson.GetString(block, "id") is not { } id)
                {
                    return ApiFailure.Invalid($"{path}.tool_use.id: Field required");
                }

                if (!ToolUseIdPattern().IsMatch(id))
                {
                    return ApiFailure.Invalid($"{path}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'");
                }

                if (FakeJson.GetString(block, "name") is null)
                {
                    return ApiFailure.Invalid($"{path}.tool_use.name: Field required");
                }

                return FakeJson.TryGet(block, "input", out var input) && input.ValueKind == JsonValueKind.Object
                    ? null
                    : ApiFailure.Invalid($"{path}.tool_use.input: Input should be a valid dictionary");
            case "tool_result":
                if (role != "user")
                {
                    return ApiFailure.Invalid($"{path}: `tool_result` blocks can only be in `user` messages");
                }

                return FakeJson.GetString(block, "tool_use_id") is null
                    ? ApiFailure.Invalid($"{path}.tool_result.tool_use_id: Field required")
                    : ValidateToolResultContent(block, $"{path}.tool_result");
            case "image":
                return role == "assistant" ? null : ValidateImage(block, $"{path}.image");
            case "document":
                return role == "assistant" ? null : ValidateDocument(block, $"{path}.document");
            default:
                return null;
        }
    }

    /// <summary>The fields each citation type requires when a text block is sent back (Claude's citation params).</summary>
    private static readonly Dictionary<string, string[]> s_citationFields = new(StringComparer.Ordinal)
    {
        ["char_location"] = ["cited_text", "document_index", "start_char_index", "end_char_index"],
        ["page_location"] = ["cited_text", "document_index", "start_page_number", "end_page_number"],
        ["content_block_location"] = ["cited_text", "document_index", "start_block_index", "end_block_index"],
        ["search_result_location"] = ["cited_text", "search_result_index", "source", "start_block_index", "end_block_index"],
        ["web_search_result_location"] = ["cited_text", "encrypted_index", "url"],
    };

    /// <summary>A text block's <c>citations</c>: absent, null, or a list of citations of a known type with their fields, as
    /// Claude sent them (a citation sent back without its <c>encrypted_index</c> is refused).</summary>
    private static ApiFailure? ValidateCitations(JsonElement block, string path)
    {
        if (!FakeJson.TryGet(block, "citations", out var citations) || citations.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (citations.ValueKind != JsonValueKind.Array)
        {
            return ApiFailure.Invalid($"{path}.citations: Input should be a valid list");
        }

        var index = 0;
        foreach (var citation in citations.EnumerateArray())
        {
            var at = string.Create(CultureInfo.InvariantCulture, $"{path}.citations.{index++}");
            if (citation.ValueKind != JsonValueKind.Object)
            {
                return ApiFailure.Invalid($"{at}: Input should be a valid dictionary");
            }

            var type = FakeJson.GetString(citation, "type");
            if (type is null || !s_citationFields.TryGetValue(type, out var fields))
            {
                return ApiFailure.UnknownTag(at, type, s_citationFields.Keys);
            }

            if (fields.FirstOrDefault(f => !FakeJson.TryGet(citation, f, out var value) || value.ValueKind == JsonValueKind.Null) is { } missing)
            {
                return ApiFailure.Invalid($"{at}.{type}.{missing}: Field required");
            }
        }

        return null;
    }

    private static readonly string[] s_imageMediaTypes = ["image/jpeg", "image/png", "image/gif", "image/webp"];

    /// <summary>A tool_result's content: a string, or a list of text, image, document and search_result blocks, each
    /// valid.</summary>
    private static ApiFailure? ValidateToolResultContent(JsonElement block, string path)
    {
        if (!FakeJson.TryGet(block, "content", out var content) || content.ValueKind == JsonValueKind.String)
        {
            return null;
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            return ApiFailure.Invalid($"{path}.content: Input should be a valid string or a valid list");
        }

        var index = 0;
        foreach (var inner in content.EnumerateArray())
        {
            var innerPath = $"{path}.content.{index}";
            if (inner.ValueKind != JsonValueKind.Object)
            {
                return ApiFailure.Invalid($"{innerPath}: Input should be a valid dictionary");
            }

            var type = FakeJson.GetString(inner, "type");
            var failure = type switch
            {
                "text" => FakeJson.GetString(inner, "text") switch
                {
                    null => ApiFailure.Invalid($"{innerPath}.text.text: Field required"),
                    { Length: 0 } => ApiFailure.Invalid("messages: text content blocks must be non-empty"),
                    _ => null,
                },
                "image" => ValidateImage(inner, $"{innerPath}.image"),
                "document" => ValidateDocument(inner, $"{innerPath}.document"),
                "search_result" => null,
                "tool_reference" => FakeJson.GetString(inner, "tool_name") is null ? ApiFailure.Invalid($"{innerPath}.tool_reference.tool_name: Field required") : null,
                _ => ApiFailure.UnknownTag(innerPath, type, "text", "image", "search_result", "document", "tool_reference"),
            };
            if (failure is not null)
            {
                return failure;
            }

            index++;
        }

        return null;
    }

    /// <summary>An image block: a base64 source with a media type Claude accepts and data that is such an image, or a URL.</summary>
    private static ApiFailure? ValidateImage(JsonElement block, string path)
    {
        if (!FakeJson.TryGet(block, "source", out var source) || source.ValueKind != JsonValueKind.Object)
        {
            return ApiFailure.Invalid($"{path}.source: Field required");
        }

        var sourceType = FakeJson.GetString(source, "type");
        switch (sourceType)
        {
            case "base64":
                var mediaType = FakeJson.GetString(source, "media_type");
                if (mediaType is null || !s_imageMediaTypes.Contains(mediaType, StringComparer.Ordinal))
                {
                    return ApiFailure.Invalid($"{path}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'");
                }

                if (DecodeBase64(source) is not { } bytes)
                {
                    return ApiFailure.Invalid($"{path}.source.base64.data: Field required and must be valid base64 data");
                }

                return ImageSignature.Sniff(bytes) == mediaType
                    ? null
                    : ApiFailure.Invalid($"{path}.source.base64.data: Image does not match the provided media type {mediaType}");
            case "url" or "file":
                return ValidateReferenceSource(source, sourceType, path);
            default:
                return ApiFailure.UnknownTag($"{path}.source", sourceType, "base64", "url", "file");
        }
    }

    /// <summary>A document block: a base64 PDF, plain text, content blocks, a URL or a file.</summary>
    private static ApiFailure? ValidateDocument(JsonElement block, string path)
    {
        if (!FakeJson.TryGet(block, "source", out var source) || source.ValueKind != JsonValueKind.Object)
        {
            return ApiFailure.Invalid($"{path}.source: Field required");
        }

        var sourceType = FakeJson.GetString(source, "type");
        switch (sourceType)
        {
            case "base64":
                if (FakeJson.GetString(source, "media_type") != "application/pdf")
                {
                    return ApiFailure.Invalid($"{path}.source.base64.media_type: Input should be 'application/pdf'");
                }

                if (DecodeBase64(source) is not { } pdf)
                {
                    return ApiFailure.Invalid($"{path}.source.base64.data: Field required and must be valid base64 data");
                }

                return pdf.AsSpan().StartsWith("%PDF-"u8) ? null : ApiFailure.Invalid($"{path}.source.base64.data: The PDF specified was not valid.");
            case "text":
                if (FakeJson.GetString(source, "media_type") != "text/plain")
                {
                    return ApiFailure.Invalid($"{path}.source.text.media_type: Input should be 'text/plain'");
                }

                return FakeJson.GetString(source, "data") is null ? ApiFailure.Invalid($"{path}.source.text.data: Field required") : null;
            case "content":
                return FakeJson.TryGet(source, "content", out _) ? null : ApiFailure.Invalid($"{path}.source.content.content: Field required");
            case "url" or "file":
                return ValidateReferenceSource(source, sourceType, path);
            default:
                return ApiFailure.UnknownTag($"{path}.source", sourceType, "base64", "text", "content", "url", "file");
        }
    }

    /// <summary>An image's or a document's source by reference: a URL or an uploaded file's id.</summary>
    private static ApiFailure? ValidateReferenceSource(JsonElement source, string sourceType, string path) => sourceType == "url"
        ? FakeJson.GetString(source, "url") is null ? ApiFailure.Invalid($"{path}.source.url.url: Field required") : null
        : FakeJson.GetString(source, "file_id") is null ? ApiFailure.Invalid($"{path}.source.file.file_id: Field required") : null;

    private static byte[]? DecodeBase64(JsonElement source)
    {
        if (FakeJson.GetString(source, "data") is not { Length: > 0 } data)
        {
            return null;
        }

        try
        {
            return Convert.FromBase64String(data);
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static ApiFailure? ValidateConversation(List<Turn> turns)
    {
        if (turns[0].Role != "user")
        {
            return ApiFailure.Invalid("messages: first message must use the \"user\" role");
        }

        // A final assistant message is a prefill that Claude continues: its text must not end with whitespace.
        if (turns[^1] is { Role: "assistant", Blocks: [.., { Type: "text" } last] } && last.Text is [.., var end] && char.IsWhiteSpace(end))
        {
            return ApiFailure.Invalid("messages: final assistant content cannot end with trailing whitespace");
        }

        var seenToolUseIds = new HashSet<string>(StringComparer.Ordinal);
        foreach (var block in turns.SelectMany(t => t.Blocks).Where(b => b.Type == "tool_use"))
        {
            if (!seenToolUseIds.Add(FakeJson.GetString(block.Element, "id")!))
            {
                return ApiFailure.Invalid($"{block.Path}: `tool_use` ids must be unique");
            }
        }

        for (var t = 0; t < turns.Count; t++)
        {
            var turn = turns[t];
            if (turn.Role == "assistant")
            {
                var toolUseIds = turn.Blocks.Where(b => b.Type == "tool_use").Select(b => FakeJson.GetString(b.Element, "id")!).ToList();
                if (toolUseIds.Count == 0)
                {
                    continue;
                }

                // The tool_result blocks must open the very next user turn.
                var answered = new HashSet<string>(StringComparer.Ordinal);
                if (t + 1 < turns.Count)
                {
                    foreach (var block in turns[t + 1].Blocks)
                    {
                        if (block.Type != "tool_result")
                        {
                            break;
                        }

                        answered.Add(FakeJson.GetString(block.Element, "tool_use_id")!);
                    }
                }

                var missing = toolUseIds.Where(id => !answered.Contains(id)).ToList();
                if (missing.Count > 0)
                {
                    return ApiFailure.Invalid($"messages.{turn.LastMessageIndex}: `tool_use` ids were found without `tool_result` blocks immediately after: {string.Join(", ", missing)}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.");
                }
            }
            else
            {
                var previousToolUseIds = t > 0
                    ? turns[t - 1].Blocks.Where(b => b.Type == "tool_use").Select(b => FakeJson.GetString(b.Element, "id")!).ToHashSet(StringComparer.Ordinal)
                    : [];
                foreach (var block in turn.Blocks)
                {
                    if (block.Type == "tool_result" && !previousToolUseIds.Contains(FakeJson.GetString(block.Element, "tool_use_id")!))
                    {
                        return ApiFailure.Invalid($"{block.Path}: unexpected `tool_use_id` found in `tool_result` blocks: {FakeJson.GetString(block.Element, "tool_use_id")}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.");
                    }
                }
            }
        }

        return null;
    }
}
