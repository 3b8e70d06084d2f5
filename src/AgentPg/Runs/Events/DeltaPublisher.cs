using System.Collections.Concurrent;
using System.Text;
using AgentPg.Claude;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Storage;
using AgentPg.Workers;
using Npgsql;

namespace AgentPg.Runs.Events;

/// <summary>Which root runs are watched, as this instance learned from agentpg_run_watch; opens a <see cref="DeltaStream"/> per
/// streamed model call. Deltas of runs nobody watches cost one dictionary lookup each.</summary>
internal sealed class DeltaPublisher(Engine engine)
{
    private readonly ConcurrentDictionary<Guid, byte> _watchedRoots = new();

    public bool AnyWatched => !_watchedRoots.IsEmpty;

    public bool IsWatched(Guid rootRunId) => _watchedRoots.ContainsKey(rootRunId);

    public void Watched(Guid rootRunId) => _watchedRoots.TryAdd(rootRunId, 0);

    public void Finished(Guid rootRunId) => _watchedRoots.TryRemove(rootRunId, out _);

    /// <summary>After the listener (re)connected: announcements sent meanwhile were lost, so read the watched active roots —
    /// and drop the roots known before the read that it does not return: their finish was announced while the listener was
    /// away (a root announced during the read is not among them; one known before has its events head committed, so it is
    /// missing from the read only when it is final or gone).</summary>
    public async Task LoadAsync(CancellationToken cancellationToken)
    {
        var known = _watchedRoots.Keys.ToList();
        try
        {
            var command = engine.Sql.RunEvents.WatchedActiveRootsCommand(engine.DataSource);
            await using (command.ConfigureAwait(false))
            {
                var active = new HashSet<Guid>();
                foreach (var root in await command.QueryListAsync(RunEventSql.ReadRootRunId, cancellationToken).ConfigureAwait(false))
                {
                    Watched(root);
                    active.Add(root);
                }

                foreach (var root in known.Where(r => !active.Contains(r)))
                {
                    Finished(root);
                }
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or OperationCanceledException)
        {
            // Watchers still get everything: deltas not published arrive as the stored message.
            Log.DeltaPublishFailed(engine.Logger, ex, Guid.Empty);
        }
    }

    /// <summary>Tells the watchers of the run's root (if any) that a model call of the run waits for Claude: a
    /// <see cref="ModelUnavailableEvent"/>, appended with the deltas' function (fenced by the run's claim; nothing when the
    /// root is not watched). Best effort: a failure is logged, the wait goes on.</summary>
    public async Task ModelUnavailableAsync(Run run, int iterationNumber, string error, TimeSpan wait, TimeSpan failingFor, CancellationToken cancellationToken)
    {
        if (!AnyWatched)
        {
            return;
        }

        var data = System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["error"] = Nul.Replace(error)!,
            ["wait_ms"] = Math.Round(wait.TotalMilliseconds),
            ["failing_for_ms"] = Math.Round(failingFor.TotalMilliseconds),
        });
        try
        {
            var command = engine.Sql.RunEvents.AppendDeltasCommand(engine.DataSource, run, engine.InstanceId, iterationNumber, ["model_unavailable"], [0], [data]);
            await using (command.ConfigureAwait(false))
            {
                await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The run was cancelled or released meanwhile: nobody waits for this event any more.
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Nobody awaits this write (ModelRetries.AnnounceWait): whatever it throws — the database, or the client's
            // data source disposed by a shutdown while the write was under way — is logged here, never left unobserved.
            Log.DeltaPublishFailed(engine.Logger, ex, run.Id);
        }
    }

    public DeltaStream Open(ClaimedRun claimed, int iterationNumber, CancellationToken cancellationToken)
        => new(engine, this, claimed.Run, iterationNumber, cancellationToken);
}

/// <summary>Publishes the text, thinking and tool-input deltas of one iteration's streamed answer while the root run is watched: coalesced
/// (every <see cref="FlushInterval"/> or <see cref="FlushBytes"/>), written by a single background writer in order, never
/// blocking the stream. When a watch starts in the middle of the answer, everything streamed so far goes out first.</summary>
internal sealed class DeltaStream : IAsyncDisposable
{
    public static readonly TimeSpan FlushInterval = TimeSpan.FromMilliseconds(50);
    public const int FlushBytes = 2048;

    private readonly Engine _engine;
    private readonly DeltaPublisher _publisher;
    private readonly Run _run;
    private readonly int _iterationNumber;
    private readonly CancellationTokenSource _stop;
    private readonly object _lock = new();
    // A tool call's input carries the call's id and name (read on the stream's thread, where the blocks are written).
    private readonly List<(string Kind, int Block, StringBuilder Text, (string Id, string Name)? Tool)> _pending = [];
    private readonly WakeSignal _wake = new();
    private readonly WakeSignal _full = new();
    private Guid _root;
    private volatile bool _rootKnown;
    private Task? _resolving;
    private Task? _writer;
    private bool _active;
    private bool _published;
    private bool _reset;
    private bool _completing;
    private volatile bool _dead;
    private int _pendingChars;

    public DeltaStream(Engine engine, DeltaPublisher publisher, Run run, int iterationNumber, CancellationToken cancellationToken)
    {
        _engine = engine;
        _publisher = publisher;
        _run = run;
        _iterationNumber = iterationNumber;
        if (run.ParentRunId is null)
        {
            _root = run.Id;
            _rootKnown = true;
        }

        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
    }

    /// <summary>A new attempt of the model call (a retry): watchers are told to drop the text of the failed attempt.</summary>
    public void BeginAttempt()
    {
        lock (_lock)
        {
            _pending.Clear();
            _pendingChars = 0;
            _active = false;
            _reset = _published;
        }
    }

    /// <summary>Called on the stream's thread after the aggregator applied a delta to the block at <paramref name="position"/>.</summary>
    public void OnDelta(ModelResponse response, int position, StreamedDelta kind, string text)
    {
        if (_dead)
        {
            return;
        }

        if (!_active)
        {
            if (!IsWatched())
            {
                return;
            }

            // First delta since the watch started: everything streamed so far, then this delta's successors.
            _active = true;
            lock (_lock)
            {
                for (var i = 0; i < response.Blocks.Count; i++)
                {
                    var block = response.Blocks[i];
                    var type = (string?)block["type"];
                    if (type is "text" or "thinking" && response.BlockText(i, type) is { Length: > 0 } soFar)
                    {
                        Append(type, i, soFar, null);
                    }
                    else if (response.PartialInput(i) is { Length: > 0 } inputSoFar)
                    {
                        Append(ToolInput, i, inputSoFar, Tool(block));
                    }
                }
            }
        }
        else
        {
            lock (_lock)
            {
                switch (kind)
                {
                    case StreamedDelta.ToolInput:
                        Append(ToolInput, position, text, Tool(response.Blocks[position]));
                        break;
                    default:
                        Append(kind == StreamedDelta.Thinking ? "thinking" : "text", position, text, null);
                        break;
                }
            }
        }

        _writer ??= Internal.Background.Run(WriteLoopAsync);
        _wake.Set();
        if (Volatile.Read(ref _pendingChars) >= FlushBytes)
        {
            _full.Set();
        }
    }

    /// <summary>The answer is complete: publishes what is pending (catching up first if a watch started late), before the
    /// iteration's result is recorded, so the deltas precede the stored message.</summary>
    public async Task CompleteAsync(ModelResponse response)
    {
        if (!_active && !_dead && response.Blocks.Count > 0)
        {
            if (!_rootKnown && _publisher.AnyWatched)
            {
                // A child run whose answer ended before its root was looked up: without waiting for the lookup, a watcher of the
                // root would get this text only with the stored message. One short query, only while some root is watched.
                _resolving ??= ResolveRootAsync();
                if (!_resolving.IsCompleted)
                {
                    Log.DeltaRootLookupPending(_engine.Logger, _run.Id);
                }

                await _resolving.ConfigureAwait(false);
            }

            if (IsWatched())
            {
                OnDelta(response, 0, StreamedDelta.Text, "");
            }
        }

        lock (_lock)
        {
            _completing = true;
        }

        if (_writer is { } writer)
        {
            _wake.Set();
            _full.Set();
            await writer.ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_resolving is { } resolving)
        {
            // It uses the token source disposed below (its failures are logged, never thrown).
            await resolving.ConfigureAwait(false);
        }

        if (_writer is { } writer)
        {
            try
            {
                await writer.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }

        _stop.Dispose();
    }

    private bool IsWatched()
    {
        if (_rootKnown)
        {
            return _publisher.IsWatched(_root);
        }

        // A child run: its root is looked up once, and only when some root is watched at all.
        if (_publisher.AnyWatched && _resolving is null)
        {
            _resolving = ResolveRootAsync();
        }

        return false;
    }

    private async Task ResolveRootAsync()
    {
        try
        {
            var command = _engine.Sql.RunEvents.RootOfCommand(_engine.DataSource, _run.Id);
            await using (command.ConfigureAwait(false))
            {
                if (await command.ExecuteScalarAsync(_stop.Token).ConfigureAwait(false) is Guid root)
                {
                    _root = root;
                    _rootKnown = true;
                }
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or OperationCanceledException)
        {
            Log.DeltaPublishFailed(_engine.Logger, ex, _run.Id);
        }
    }

    private static (string Id, string Name) Tool(System.Text.Json.Nodes.JsonObject block) => ((string?)block["id"] ?? "", (string?)block["name"] ?? "");

    private void Append(string kind, int block, string text, (string Id, string Name)? tool)
    {
        if (text.Length == 0)
        {
            return;
        }

        if (_pending.Count > 0 && _pending[^1] is var last && last.Kind == kind && last.Block == block)
        {
            last.Text.Append(text);
        }
        else
        {
            _pending.Add((kind, block, new StringBuilder(text), tool));
        }

        _pendingChars += text.Length;
    }

    private async Task WriteLoopAsync()
    {
        var token = _stop.Token;
        try
        {
            while (true)
            {
                await _wake.WaitAsync(Timeout.InfiniteTimeSpan, _engine.Time, token).ConfigureAwait(false);
                if (!Volatile.Read(ref _completing) && Volatile.Read(ref _pendingChars) < FlushBytes)
                {
                    // Coalesce: more deltas arrive within the interval unless the buffer filled up.
                    await _full.WaitAsync(FlushInterval, _engine.Time, token).ConfigureAwait(false);
                }

                List<string> kinds = [];
                List<int> blocks = [];
                List<string> texts = [];
                bool completing;
                lock (_lock)
                {
                    completing = _completing;
                    if (_reset)
                    {
                        kinds.Add("iteration");
                        blocks.Add(0);
                        texts.Add("");
                        _reset = false;
                    }

                    foreach (var (kind, block, text, tool) in _pending)
                    {
                        kinds.Add(kind);
                        blocks.Add(block);
                        // U+0000 cannot be stored: the same U+FFFD the stored answer gets (Internal/Nul.cs).
                        var delta = Nul.Replace(text.ToString())!;
                        texts.Add(tool is { } call ? ToolInputText(call.Id, call.Name, delta) : delta);
                    }

                    _pending.Clear();
                    _pendingChars = 0;
                    // Counted as published from the moment they leave the buffer: a retry that begins while they are being
                    // written (BeginAttempt) must still tell watchers to drop them, since the write goes through after it.
                    _published |= texts.Count > 0;
                }

                if (texts.Count > 0 && !await WriteAsync(kinds, blocks, texts, token).ConfigureAwait(false))
                {
                    // Not held any more, or not watched: nobody can use further deltas of this answer.
                    _dead = true;
                    return;
                }

                if (completing)
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
    }

    /// <summary>The kind of a tool-input delta's event row; its text is <see cref="ToolInputText"/>.</summary>
    public const string ToolInput = "tool_input";

    /// <summary>A tool-input delta's text: the call's id and name with the piece of input JSON, as one JSON object (the event
    /// rows hold one text per delta, as a model-unavailable event's wait does).</summary>
    internal static string ToolInputText(string id, string name, string partialJson)
        => System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["id"] = Nul.Replace(id)!,
            ["name"] = Nul.Replace(name)!,
            ["partial_json"] = partialJson,
        });

    private async Task<bool> WriteAsync(List<string> kinds, List<int> blocks, List<string> texts, CancellationToken token)
    {
        try
        {
            var command = _engine.Sql.RunEvents.AppendDeltasCommand(_engine.DataSource, _run, _engine.InstanceId, _iterationNumber, kinds, blocks, texts);
            await using (command.ConfigureAwait(false))
            {
                return await command.ExecuteScalarAsync(token).ConfigureAwait(false) is true;
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
        {
            Log.DeltaPublishFailed(_engine.Logger, ex, _run.Id);
            return false;
        }
    }
}
