namespace AgentPg.Tests.Infrastructure;

/// <summary>Polls a condition until it holds or a deadline passes, then fails with a message that says what did not happen.</summary>
public static class Eventually
{
    public static async Task TrueAsync(Func<Task<bool>> condition, string whatShouldHappen, TimeSpan? timeout = null, TimeSpan? interval = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        using var timer = new PeriodicTimer(interval ?? TimeSpan.FromMilliseconds(25));
        while (true)
        {
            if (await condition())
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"Timed out after {(timeout ?? TimeSpan.FromSeconds(30)).TotalSeconds:0.#} s waiting until {whatShouldHappen}.");
            }

            await timer.WaitForNextTickAsync();
        }
    }

    public static Task TrueAsync(Func<bool> condition, string whatShouldHappen, TimeSpan? timeout = null)
        => TrueAsync(() => Task.FromResult(condition()), whatShouldHappen, timeout);

    /// <summary>Awaits a task with a deadline.</summary>
    public static async Task<T> WithinAsync<T>(Task<T> task, string what, TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromSeconds(30);
        try
        {
            return await task.WaitAsync(limit);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"Timed out after {limit.TotalSeconds:0.#} s waiting for {what}.");
            throw;
        }
    }

    public static async Task WithinAsync(Task task, string what, TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromSeconds(30);
        try
        {
            await task.WaitAsync(limit);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"Timed out after {limit.TotalSeconds:0.#} s waiting for {what}.");
        }
    }
}
