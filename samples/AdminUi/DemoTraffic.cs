using AgentPg;

/// <summary>Starts a conversation for each tenant every few seconds (some ask for a refund, which waits for approval in the
/// admin UI), so the dashboard's charts and lists fill up.</summary>
internal sealed class DemoTraffic(AgentPgClient client, ILogger<DemoTraffic> logger) : BackgroundService
{
    private static readonly string[] s_prompts =
        ["Where is my order? Please lookup_order 1042.", "Can you lookup_order 77 for me?", "Please issue_refund for order 1042.", "Hello!"];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(4));
        var n = 0;
        do
        {
            try
            {
                var agent = await client.GetAgentByNameAsync("support", cancellationToken: stoppingToken);
                foreach (var tenant in Users.Tenants)
                {
                    var session = await client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant }, cancellationToken: stoppingToken);
                    await client.RunFastAsync(session, agent.Id, s_prompts[n++ % s_prompts.Length], cancellationToken: stoppingToken);
                }
            }
            catch (AgentPgException e) when (e.Code == AgentPgErrorCode.AgentNotFound)
            {
                // The agent is created when the host starts; the first tick can come before that.
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogWarning(e, "demo traffic failed; retrying at the next tick");
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
