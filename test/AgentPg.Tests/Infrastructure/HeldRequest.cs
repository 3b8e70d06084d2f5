using AgentPg.Testing;

namespace AgentPg.Tests.Infrastructure;

/// <summary>Installs a responder on the fake Claude that holds the request whose last user text is <c>prompt</c> (or that
/// <c>hold</c> selects) until <see cref="Release"/>; every request is answered by <c>reply</c>. <see cref="Arrived"/> completes
/// when the held request has reached the server, <see cref="Aborted"/> when its client gave up on it (a cancelled run's stream).</summary>
public sealed class HeldRequest
{
    private readonly TaskCompletionSource _arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _aborted = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public HeldRequest(FakeClaudeServer claude, string prompt, Func<FakeRequest, FakeReply> reply)
        : this(claude, request => request.LastUserText == prompt, reply)
    {
    }

    public HeldRequest(FakeClaudeServer claude, Func<FakeRequest, bool> hold, Func<FakeRequest, FakeReply> reply)
    {
        claude.Respond(async (request, ct) =>
        {
            if (hold(request))
            {
                _arrived.TrySetResult();
                try
                {
                    await _release.Task.WaitAsync(ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    _aborted.TrySetResult();
                    throw;
                }
            }

            return reply(request);
        });
    }

    public Task Arrived => _arrived.Task;

    public Task Aborted => _aborted.Task;

    public void Release() => _release.TrySetResult();
}
