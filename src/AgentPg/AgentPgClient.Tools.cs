using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Storage;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Registers a tool on this instance (before or after <see cref="StartAsync"/>).</summary>
    /// <param name="tool">The tool. A tool with the same name replaces the previous one.</param>
    /// <remarks>Runs of agents that list tools are only claimed by instances that registered all of them. When the
    /// client is started, the registration is written to the database in the background.</remarks>
    /// <exception cref="ArgumentException">The name does not match <c>^[a-zA-Z0-9_-]{1,64}$</c>, the description is missing,
    /// or the input schema is not an object schema.</exception>
    public void RegisterTool(ITool tool)
    {
        ArgumentNullException.ThrowIfNull(tool);
        ValidateTool(tool);
        _tools[tool.Name] = tool;
        if (_started)
        {
            _ = SyncToolInBackgroundAsync(tool.Name);
        }
    }

    /// <summary>Removes a registered tool from this instance (for example one its source no longer offers).</summary>
    /// <param name="name">The tool name.</param>
    /// <returns><see langword="true"/> when a tool with that name was registered.</returns>
    /// <remarks>Runs of agents that list the tool are no longer claimed by this instance. When the client is started,
    /// the instance's registration is removed from the database in the background. An execution of the tool already
    /// claimed by this instance completes as failed with "tool not found".</remarks>
    public bool UnregisterTool(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_tools.TryRemove(name, out _))
        {
            return false;
        }

        if (_started)
        {
            _ = SyncToolInBackgroundAsync(name);
        }

        return true;
    }

    /// <summary>Registers a Microsoft.Extensions.AI function as a tool (see <see cref="FunctionTool.Create(Microsoft.Extensions.AI.AIFunction)"/>).</summary>
    /// <param name="function">The function, for example one made with <c>AIFunctionFactory.Create</c>.</param>
    /// <exception cref="ArgumentException">The function's name does not match <c>^[a-zA-Z0-9_-]{1,64}$</c>.</exception>
    public void RegisterTool(Microsoft.Extensions.AI.AIFunction function) => RegisterTool(FunctionTool.Create(function));

    /// <summary>Gets a registered tool.</summary>
    /// <param name="name">The tool name.</param>
    /// <returns>The tool, or <see langword="null"/> when none has that name.</returns>
    public ITool? GetTool(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _tools.GetValueOrDefault(name);
    }

    /// <summary>Gets the names of the registered tools, sorted.</summary>
    /// <returns>The names (empty when none).</returns>
    public IReadOnlyList<string> GetAllToolNames() => [.. _tools.Keys.Order(StringComparer.Ordinal)];

    internal static void ValidateTool(ITool tool)
    {
        if (!ToolNames.IsValid(tool.Name))
        {
            throw new ArgumentException(
                $"Tool name '{tool.Name}' is invalid: Claude requires 1 to 64 letters, digits, '_' or '-' ({ToolNames.Rule}).", nameof(tool));
        }

        if (tool.Description is null)
        {
            throw new ArgumentException($"Tool '{tool.Name}' has no description; Claude needs one to know when to call it.", nameof(tool));
        }

        if (tool.InputSchema is null)
        {
            throw new ArgumentException($"Tool '{tool.Name}' has no input schema; use new ToolSchema() for a tool without parameters.", nameof(tool));
        }

        if (tool.InputSchema.Type != "object")
        {
            throw new ArgumentException(
                $"Tool '{tool.Name}' has an input schema of type '{tool.InputSchema.Type}'; Claude requires type 'object'.", nameof(tool));
        }

        if (tool.InputSchema.JsonSchema is not null)
        {
            // A complete JSON Schema may define required properties elsewhere (allOf, $ref …); it must compile.
            Tools.FullSchemaValidator.EnsureUsable(tool.Name, tool.InputSchema);
            return;
        }

        foreach (var required in tool.InputSchema.Required)
        {
            if (!tool.InputSchema.Properties.ContainsKey(required))
            {
                throw new ArgumentException(
                    $"Tool '{tool.Name}' requires property '{required}', which its input schema does not define.", nameof(tool));
            }
        }
    }

    /// <summary>Writes the current registration state of one tool (registered or not); serialized, so the database
    /// ends in the state of the last change even when changes to the same tool follow each other quickly.</summary>
    private async Task SyncToolInBackgroundAsync(string name)
    {
        try
        {
            await _toolSync.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                if (_tools.TryGetValue(name, out var tool))
                {
                    await SyncToolsAsync([tool], CancellationToken.None).ConfigureAwait(false);
                }
                else
                {
                    var command = Db.Command(_dataSource, null, _sql.Instances.UnregisterTools, P.Text(InstanceId), P.TextArray([name]));
                    await using (command.ConfigureAwait(false))
                    {
                        await command.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                    }
                }
            }
            finally
            {
                _toolSync.Release();
            }
        }
        catch (Exception ex) when (ex is Npgsql.NpgsqlException or TimeoutException or InvalidOperationException or ObjectDisposedException)
        {
            Log.ToolSyncFailed(_logger, ex, name);
        }
    }

    private async Task SyncToolsAsync(List<ITool> tools, CancellationToken cancellationToken)
    {
        var batch = _dataSource.CreateBatch();
        await using (batch.ConfigureAwait(false))
        {
            AddToolSync(batch, tools);
            if (batch.BatchCommands.Count > 0)
            {
                await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private void AddToolSync(Npgsql.NpgsqlBatch batch, List<ITool> tools)
    {
        if (tools.Count == 0)
        {
            return;
        }

        var ordered = tools.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var upsert = new Npgsql.NpgsqlBatchCommand(_sql.Instances.UpsertTools);
        upsert.Parameters.Add(P.TextArray([.. ordered.Select(t => t.Name)]));
        upsert.Parameters.Add(P.TextArray([.. ordered.Select(t => t.Description)]));
        upsert.Parameters.Add(P.TextArray([.. ordered.Select(t => t.InputSchema.ToJson())]));
        batch.BatchCommands.Add(upsert);
        var register = new Npgsql.NpgsqlBatchCommand(_sql.Instances.RegisterTools);
        register.Parameters.Add(P.Text(InstanceId));
        register.Parameters.Add(P.TextArray([.. ordered.Select(t => t.Name)]));
        batch.BatchCommands.Add(register);
    }
}
