using System.Net;
using System.Text.RegularExpressions;
using AgentPg.Cli;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Cli;

/// <summary>agentpg serve: a worker plus the admin UI behind a one-time login token.</summary>
public sealed partial class CliServeTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [DatabaseFact]
    public async Task Serve_Fake_AnswersHealthSignsInOnceAndProcessesARun()
    {
        Assert.True(string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY")), "this test runs serve --fake, which uses Claude when ANTHROPIC_API_KEY is set: unset it");
        using var stop = new CancellationTokenSource();
        // serve writes from its own tasks while the test reads: synchronized writers (which lock on themselves, as read here).
        var outputText = new StringWriter();
        var errorText = new StringWriter();
        var output = TextWriter.Synchronized(outputText);
        var error = TextWriter.Synchronized(errorText);
        string Read(TextWriter writer, StringWriter text)
        {
            lock (writer)
            {
                return text.ToString();
            }
        }

        var serving = CliApp.RunAsync(["--connection", TestDatabase.ConnectionString, "--schema", db.Schema, "serve", "--fake", "--urls", "http://127.0.0.1:0"],
            output, error, TextReader.Null, new CliInterrupts(), stop.Token);
        try
        {
            string? address = null;
            await Eventually.TrueAsync(() =>
            {
                Assert.False(serving.IsCompleted, $"agentpg serve ended: {Read(output, outputText)}\n{Read(error, errorText)}");
                address = ListeningPattern().Match(Read(output, outputText)) is { Success: true } match ? match.Groups[1].Value : null;
                return address is not null;
            }, "agentpg serve prints where it listens", s_timeout);
            var token = TokenPattern().Match(Read(output, outputText)).Groups[1].Value;
            Assert.NotEmpty(token);

            using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(address!) };
            var health = await browser.GetAsync("/healthz");
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            Assert.Equal("Healthy", await health.Content.ReadAsStringAsync());

            // Never anonymous: the UI sends a browser without the cookie to the login page, which wants the token.
            var anonymous = await browser.GetAsync("/agentpg");
            Assert.Equal(HttpStatusCode.Redirect, anonymous.StatusCode);
            Assert.StartsWith("/login", anonymous.Headers.Location!.PathAndQuery, StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/login?token=0123")).StatusCode);
            var login = await browser.GetAsync($"/login?token={token}");
            Assert.Equal(HttpStatusCode.Redirect, login.StatusCode);
            var page = await browser.GetAsync("/agentpg/dashboard");
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            // The token signs in once.
            using var second = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(address!) };
            Assert.Equal(HttpStatusCode.Unauthorized, (await second.GetAsync($"/login?token={token}")).StatusCode);

            // The worker processes a run created by another client, with a demo tool.
            await using var producer = db.CreateClient();
            var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = "serve_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5", Tools = ["calculate"] });
            var session = await producer.NewSessionAsync();
            var response = await producer.RunFastSyncAsync(session, agent.Id, "What is 17 * 23?").WaitAsync(s_timeout);
            Assert.Contains("391", response.Text, StringComparison.Ordinal);
        }
        finally
        {
            await stop.CancelAsync();
        }

        Assert.Equal(0, await serving.WaitAsync(s_timeout));
        Assert.Contains("agentpg serve: stopped.", Read(output, outputText), StringComparison.Ordinal);
    }

    [GeneratedRegex(@"Listening on (http://\S+)")]
    private static partial Regex ListeningPattern();

    [GeneratedRegex(@"token=([0-9a-f]+)")]
    private static partial Regex TokenPattern();
}
