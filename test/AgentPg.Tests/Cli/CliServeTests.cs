using System.Net;
using System.Text.RegularExpressions;
using AgentPg.Cli;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Cli;

/// <summary>agentpg serve: a worker plus the admin UI behind a one-time login token.</summary>
public sealed partial class CliServeTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [DatabaseFact]
    public async Task Serve_Fake_AnswersHealthSignsInOnceAndProcessesARun()
    {
        await using var serve = await Serving.StartAsync(db.Schema, "--fake", "--urls", "http://127.0.0.1:0");
        var token = TokenPattern().Match(serve.Output).Groups[1].Value;
        Assert.NotEmpty(token);
        Assert.Single(TokenPattern().Matches(serve.Output));

        using var browser = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(serve.Address) };
        var health = await browser.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal("Healthy", await health.Content.ReadAsStringAsync());

        // Never anonymous: the UI sends a browser without the cookie to the login page, which wants the token.
        var anonymous = await browser.GetAsync("/agentpg");
        Assert.Equal(HttpStatusCode.Redirect, anonymous.StatusCode);
        Assert.StartsWith("/login", anonymous.Headers.Location!.PathAndQuery, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Redirect, (await browser.GetAsync("/agentpg/dashboard")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/login?token=0123")).StatusCode);
        var login = await browser.GetAsync($"/login?token={token}");
        Assert.Equal(HttpStatusCode.Redirect, login.StatusCode);
        var page = await browser.GetAsync("/agentpg/dashboard");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        // The token signs in once.
        using var second = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(serve.Address) };
        Assert.Equal(HttpStatusCode.Unauthorized, (await second.GetAsync($"/login?token={token}")).StatusCode);
        Assert.Equal(HttpStatusCode.Redirect, (await second.GetAsync("/agentpg/dashboard")).StatusCode);

        // The worker processes a run created by another client, with a demo tool.
        await AssertProcessesARunAsync();

        Assert.Equal(0, await serve.StopAsync());
        Assert.Contains("agentpg serve: stopped.", serve.Output, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Serve_NoUi_WorkerAndHealthOnly()
    {
        await using var serve = await Serving.StartAsync(db.Schema, "--fake", "--no-ui", "--urls", "http://127.0.0.1:0");
        Assert.DoesNotMatch(TokenPattern(), serve.Output);
        Assert.DoesNotContain("Admin UI", serve.Output, StringComparison.Ordinal);

        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(serve.Address) };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/agentpg")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/agentpg/dashboard")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/login?token=0123")).StatusCode);

        await AssertProcessesARunAsync();

        Assert.Equal(0, await serve.StopAsync());
    }

    [DatabaseFact]
    public async Task Serve_SchemaNotMigrated_OneLineErrorBeforeListening()
    {
        var result = await CliRunner.RunAsync("agentpg_not_migrated_" + Guid.NewGuid().ToString("N")[..6], "serve", "--fake", "--urls", "http://127.0.0.1:0");

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.StartsWith("error: the AgentPg schema ", result.Error, StringComparison.Ordinal);
        Assert.Contains("is not migrated", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("Listening", result.Output, StringComparison.Ordinal);
    }

    private async Task AssertProcessesARunAsync()
    {
        await using var producer = db.CreateClient();
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = "serve_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5", Tools = ["calculate"] });
        var session = await producer.NewSessionAsync();
        var response = await producer.RunFastSyncAsync(session, agent.Id, "What is 17 * 23?").WaitAsync(s_timeout);
        Assert.Contains("391", response.Text, StringComparison.Ordinal);
    }

    /// <summary>agentpg serve running in-process until stopped (the test's token stands for Ctrl+C).</summary>
    private sealed class Serving : IAsyncDisposable
    {
        // serve writes from its own tasks while the test reads: synchronized writers (which lock on themselves, as read here).
        private readonly StringWriter _outputText = new();
        private readonly StringWriter _errorText = new();
        private readonly TextWriter _output;
        private readonly TextWriter _error;
        private readonly CancellationTokenSource _stop = new();
        private Task<int> _serving = Task.FromResult(-1);

        private Serving()
        {
            _output = TextWriter.Synchronized(_outputText);
            _error = TextWriter.Synchronized(_errorText);
        }

        public string Address { get; private set; } = "";

        public string Output => Read(_output, _outputText);

        public static async Task<Serving> StartAsync(string schema, params string[] args)
        {
            Assert.True(string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY")),
                "this test runs serve --fake, which uses Claude when ANTHROPIC_API_KEY is set: unset it");
            var serve = new Serving();
            serve._serving = CliApp.RunAsync(["--connection", TestDatabase.ConnectionString, "--schema", schema, "serve", .. args],
                serve._output, serve._error, TextReader.Null, new CliInterrupts(), serve._stop.Token);
            try
            {
                await Eventually.TrueAsync(() =>
                {
                    Assert.False(serve._serving.IsCompleted, $"agentpg serve ended: {serve.Output}\n{Read(serve._error, serve._errorText)}");
                    serve.Address = ListeningPattern().Match(serve.Output) is { Success: true } match ? match.Groups[1].Value : "";
                    return serve.Address.Length > 0 && serve.Output.Contains("Press Ctrl+C", StringComparison.Ordinal);
                }, "agentpg serve prints where it listens", s_timeout);
            }
            catch
            {
                await serve.DisposeAsync();
                throw;
            }

            return serve;
        }

        public async Task<int> StopAsync()
        {
            await _stop.CancelAsync();
            return await _serving.WaitAsync(s_timeout);
        }

        public async ValueTask DisposeAsync()
        {
            if (!_serving.IsCompleted)
            {
                await _stop.CancelAsync();
                await _serving.WaitAsync(s_timeout);
            }

            _stop.Dispose();
        }

        private static string Read(TextWriter writer, StringWriter text)
        {
            lock (writer)
            {
                return text.ToString();
            }
        }
    }

    [GeneratedRegex(@"Listening on (http://\S+)")]
    private static partial Regex ListeningPattern();

    [GeneratedRegex(@"token=([0-9a-f]+)")]
    private static partial Regex TokenPattern();
}
