// AgentPg in a minimal API.
//
//   POST /orders     {"item": "espresso beans", "quantity": 3}
//                    creates the order and the agent run that checks it in ONE EF Core transaction → 202 + run id
//   GET  /runs/{id}  the run's state, and its answer once it finished
//   GET  /health     database, schema version and worker heartbeat
//
// Run it with `./build.sh sample WebApi` (a throwaway PostgreSQL; the fake Claude unless ANTHROPIC_API_KEY is set), or
// `dotnet run --project samples/WebApi` with ConnectionStrings__Shop pointing at your database. `--smoke` posts one order,
// waits for its answer, prints it and exits.

using AgentPg;
using AgentPg.Testing;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using WebApi;

var builder = WebApplication.CreateBuilder(args);
var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION") is { Length: > 0 } fromEnvironment
    ? fromEnvironment
    : builder.Configuration.GetConnectionString("Shop")!;

// Without an API key the sample talks to the bundled fake Claude, so it runs offline.
await using var fakeClaude = string.IsNullOrEmpty(builder.Configuration["AgentPg:ApiKey"] ?? Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY"))
    ? await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = FakeModels.Demo })
    : null;

builder.Services.AddNpgsqlDataSource(connectionString);
builder.Services.AddDbContext<ShopDb>((services, options) => options.UseNpgsql(services.GetRequiredService<NpgsqlDataSource>()));
builder.Services.AddAgentPg(builder.Configuration.GetSection("AgentPg"))
    .AddWorker()
    .AddTool<ReserveStockTool>()
    .AddAgent(new AgentDefinition
    {
        Name = "order_checker",
        Model = "claude-sonnet-4-5",
        SystemPrompt = "You check new orders: reserve their stock with reserve_stock, then confirm in one sentence.",
        Tools = ["reserve_stock"],
    });
if (fakeClaude is not null)
{
    builder.Services.Configure<AgentPgOptions>(o => (o.ApiKey, o.BaseUrl) = (fakeClaude.ApiKey, fakeClaude.BaseUrl));
}

builder.Services.AddHealthChecks().AddAgentPg();
// Errors as RFC 9457 problem details: a request the endpoint cannot bind (malformed JSON, a number as text) is a 400 that
// says so, not an empty body.
builder.Services.AddProblemDetails();

var app = builder.Build();
app.UseExceptionHandler();
app.UseStatusCodePages();

app.MapPost("/orders", async (NewOrder request, ShopDb db, AgentPgClient agents, CancellationToken cancellationToken) =>
{
    // The item goes into the database and the agent's prompt: text of a reasonable length, no control characters (PostgreSQL
    // cannot store U+0000).
    if (string.IsNullOrWhiteSpace(request.Item) || request.Item.Length > 200 || request.Item.Any(char.IsControl) || request.Quantity is < 1 or > 1000)
    {
        return Results.ValidationProblem(new Dictionary<string, string[]>
        {
            ["order"] = ["item is required (at most 200 characters, no control characters) and quantity must be 1 to 1000"],
        });
    }

    var agent = await agents.GetAgentByNameAsync("order_checker", cancellationToken: cancellationToken);
    var order = new Order { Id = Guid.NewGuid(), Item = request.Item, Quantity = request.Quantity };

    // The order row and the run commit together: no order without its check, no check of an order that was rolled back.
    await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
    db.Orders.Add(order);
    var session = await agents.NewSessionAsync(db, cancellationToken: cancellationToken);
    order.RunId = await agents.RunFastAsync(db, session, agent.Id,
        $"Check the new order: {order.Quantity} x {order.Item}. Call reserve_stock, then confirm.",
        new RunOptions { Variables = new Dictionary<string, object?> { ["order_id"] = order.Id } }, cancellationToken);
    await db.SaveChangesAsync(cancellationToken);
    await transaction.CommitAsync(cancellationToken);

    return Results.Accepted($"/runs/{order.RunId}", new { orderId = order.Id, runId = order.RunId });
});

app.MapGet("/runs/{id:guid}", async (Guid id, AgentPgClient agents, CancellationToken cancellationToken) =>
{
    Run run;
    try
    {
        run = await agents.GetRunAsync(id, cancellationToken);
    }
    catch (AgentPgException e) when (e.Code == AgentPgErrorCode.RunNotFound)
    {
        return Results.NotFound();
    }

    if (run.State != RunState.Completed)
    {
        return Results.Ok(new { id, state = run.State.ToString(), error = run.ErrorMessage });
    }

    // A completed run's response is read at once.
    var response = await agents.WaitForRunAsync(id, cancellationToken);
    return Results.Ok(new { id, state = run.State.ToString(), text = response.Text, toolCalls = response.ToolCalls.Select(c => c.Name), usage = response.Usage });
});

app.MapHealthChecks("/health");

await using (var scope = app.Services.CreateAsyncScope())
{
    // Before the host starts: MigrateOnStart runs in the hosted service, and the orders table is the sample's own.
    try
    {
        await scope.ServiceProvider.GetRequiredService<ShopDb>().CreateTableAsync(CancellationToken.None);
    }
    catch (NpgsqlException ex)
    {
        // The first statement that needs the database: say what to do instead of a stack trace.
        Console.Error.WriteLine($"WebApi failed: PostgreSQL error: {ex.Message}");
        Console.Error.WriteLine("Is PostgreSQL running? Set ConnectionStrings__Shop (or AGENTPG_CONNECTION), or use ./build.sh sample WebApi for a throwaway database.");
        Environment.ExitCode = 1;
        return;
    }
}

if (args.Contains("--smoke"))
{
    app.Urls.Add("http://127.0.0.1:0");
    await app.StartAsync();
    using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };
    var created = await (await http.PostAsJsonAsync("/orders", new NewOrder("espresso beans", 3))).EnsureSuccessStatusCode()
        .Content.ReadFromJsonAsync<Created>();
    for (var attempt = 0; attempt < 300; attempt++)
    {
        var run = await http.GetFromJsonAsync<System.Text.Json.JsonElement>($"/runs/{created!.RunId}");
        if (run.TryGetProperty("text", out var text))
        {
            Console.WriteLine($"order {created.OrderId} → run {created.RunId}: {text.GetString()}");
            break;
        }

        await Task.Delay(100);
    }

    Console.WriteLine(await http.GetStringAsync("/health"));
    foreach (var (what, body) in new[]
             {
                 ("malformed JSON", "{\"item\": "), ("quantity as text", "{\"item\": \"tea\", \"quantity\": \"three\"}"),
                 ("no item", "{\"quantity\": 2}"), ("a NUL in the item", "{\"item\": \"tea\\u0000\", \"quantity\": 1}"),
             })
    {
        using var rejected = await http.PostAsync("/orders", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        Console.WriteLine($"bad input ({what}): {(int)rejected.StatusCode} {rejected.Content.Headers.ContentType?.MediaType}");
    }

    await app.StopAsync();
    return;
}

await app.RunAsync();

internal sealed record NewOrder(string Item, int Quantity);

internal sealed record Created(Guid OrderId, Guid RunId);
