using AgentPg.Testing;

namespace AgentPg.Tests.Infrastructure;

/// <summary>Installs a responder on the fake Claude that holds the request whose last user text is <c>prompt</c> until
/// <see cref="Release"/>; every request is answered by <c>reply</c>. <see cref="Arrived"/> completes when the held
/// request has reached the server.</summary>
public sealed class HeldRequest
{
    private readonly TaskCompletionSource _arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public HeldRequest(FakeClaudeServer claude, string prompt, Func<FakeRequest, FakeReply> reply)
    {
        claude.Respond(async (request, ct) =>
        {
            if (request.LastUserText == prompt)
            {
                _arrived.TrySetResult();
                await _release.Task.WaitAsync(ct);
            }

            return reply(request);
        });
    }

    public Task Arrived => _arrived.Task;

    public void Release() => _release.TrySetResult();
}
