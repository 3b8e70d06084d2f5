using System.Diagnostics;
using System.Net;
using AgentPg.Mcp;
using AgentPg.McpTestServer;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace AgentPg.Tests.Mcp;

/// <summary>The test MCP server as a child process over stdio; its events go to a file the test reads.</summary>
public sealed class StdioTestServer : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("agentpg-mcp-").FullName;

    public string EventsFile => Path.Combine(_directory, "events.txt");

    public IReadOnlyList<string> Events => File.Exists(EventsFile) ? File.ReadAllLines(EventsFile) : [];

    public McpServerOptions Options(string name = "test") => new()
    {
        Name = name,
        Command = "dotnet",
        Arguments = [ServerPath()],
        Environment = new Dictionary<string, string?> { ["AGENTPG_MCP_TEST_EVENTS"] = EventsFile },
        WorkingDirectory = _directory,
    };

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A server process still writing; the temp directory is cleaned up by the OS.
        }
    }

    public static string ServerPath()
    {
        // Same configuration as this test assembly: .../test/AgentPg.Tests/bin/<Configuration>/net10.0/
        var testBin = new DirectoryInfo(AppContext.BaseDirectory);
        var configuration = testBin.Parent!.Name;
        var testRoot = testBin.Parent.Parent!.Parent!.Parent!.FullName;
        var path = Path.Combine(testRoot, "AgentPg.McpTestServer", "bin", configuration, "net10.0", "AgentPg.McpTestServer.dll");
        return File.Exists(path) ? path : throw new FileNotFoundException("Build test/AgentPg.McpTestServer first (dotnet build AgentPg.slnx).", path);
    }

    public static bool IsRunning(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

/// <summary>The test MCP server over Streamable HTTP on 127.0.0.1 (ModelContextProtocol.AspNetCore), optionally requiring headers.</summary>
public sealed class HttpTestServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private HttpTestServer(WebApplication app, TestServer server, Uri endpoint)
    {
        _app = app;
        Server = server;
        Endpoint = endpoint;
    }

    public TestServer Server { get; }

    public Uri Endpoint { get; }

    private string? _rateLimitNextPost;

    /// <summary>The next POST (a tool call, once connected) is answered 429 with this <c>Retry-After</c> ("" for none).</summary>
    public void RateLimitNextPost(string retryAfter) => Volatile.Write(ref _rateLimitNextPost, retryAfter);

    /// <summary>Every request's headers, as (name, value) pairs of the ones the test asked to record.</summary>
    public List<string> SeenAuthorization { get; } = [];

    /// <summary>Every <c>Mcp-Param-*</c> header received, as <c>name: value</c>.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> SeenParamHeaders { get; } = new();

    public static async Task<HttpTestServer> StartAsync(IReadOnlyDictionary<string, string>? requiredHeaders = null, TestServer? server = null, int port = 0)
    {
        server ??= new TestServer();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, port));
        builder.Services.AddMcpServer(server.Configure).WithHttpTransport();
        var app = builder.Build();
        HttpTestServer? self = null;
        app.Use(async (context, next) =>
        {
            lock (self!.SeenAuthorization)
            {
                self.SeenAuthorization.Add(context.Request.Headers.Authorization.ToString());
            }

            foreach (var header in context.Request.Headers.Where(h => h.Key.StartsWith("Mcp-Param-", StringComparison.OrdinalIgnoreCase)))
            {
                self.SeenParamHeaders.Enqueue($"{header.Key}: {header.Value}");
            }

            if (HttpMethods.IsPost(context.Request.Method) && Interlocked.Exchange(ref self._rateLimitNextPost, null) is { } retryAfter)
            {
                context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
                if (retryAfter.Length > 0)
                {
                    context.Response.Headers.RetryAfter = retryAfter;
                }

                return;
            }

            foreach (var (name, value) in requiredHeaders ?? new Dictionary<string, string>())
            {
                if (context.Request.Headers[name] != value)
                {
                    context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                    return;
                }
            }

            await next(context);
        });
        app.MapMcp("/mcp");
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        self = new HttpTestServer(app, server, new Uri(address.TrimEnd('/') + "/mcp"));
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
