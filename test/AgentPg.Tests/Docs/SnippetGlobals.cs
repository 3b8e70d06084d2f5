using System.Text.Json;
using AgentPg.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

#pragma warning disable CA1051, CA1707, CA1822, CA2211, IDE1006, SA1401 // the names the documentation's prose uses, as fields

namespace AgentPg.Tests.Docs
{
    /// <summary>The variables the documentation's C# blocks assume, as the globals of <see cref="CodeSnippetTests"/>'s
    /// compilations (<c>using static</c>). The blocks are compiled, never run.</summary>
    public static class SnippetGlobals
    {
        public static string[] args = [];
        public static WebApplicationBuilder builder = null!;
        public static WebApplication app = null!;
        public static IServiceCollection services = null!;
        public static AgentPgClient client = null!;
        public static AgentPgClient agents = null!;
        public static AgentPgClient agentpg = null!;
        public static AgentDefinition agent = null!;
        public static AgentDefinition definition = null!;
        public static AgentPgOptions options = null!;
        public static NpgsqlDataSource dataSource = null!;
        public static NpgsqlConnection connection = null!;
        public static string connectionString = "";
        public static Guid id;
        public static Guid agentId;
        public static Guid sessionId;
        public static Guid runId;
        public static ToolApprovalRequest r = null!;
        public static ToolApprovalRequest request = null!;
        public static string user = "";
        public static string tenantId = "";
        public static string sku = "";
        public static ToolContext context = null!;
        public static CancellationToken ct;
        public static CancellationToken cancellationToken;
        public static FakeClaudeServer claude = null!;
        public static SnippetTypes.ShopDb db = null!;
        public static SnippetTypes.Order order = null!;
        public static SnippetTypes.ICharts charts = null!;
        public static SnippetTypes.ICharts _charts = null!;
        public static SnippetTypes.ISales _sales = null!;
        public static SnippetTypes.ITokens tokens = null!;

        public static byte[] RenderChartPng() => [];

        public static Task InsertOrderAsync(NpgsqlConnection c, NpgsqlTransaction t, SnippetTypes.Order o) => Task.CompletedTask;

        public static Task InsertAuditAsync(NpgsqlConnection c, NpgsqlTransaction t, Guid toolExecutionId, string by) => Task.CompletedTask;
    }
}

namespace AgentPg.Tests.Docs.SnippetTypes
{
    /// <summary>The application's types the documentation's blocks use.</summary>
    public sealed class Order
    {
        public Guid Id { get; set; }
    }

    public sealed class Reservation
    {
        public int Id { get; set; }

        public string Sku { get; set; } = "";
    }

    public sealed class ShopDb(DbContextOptions<ShopDb> options) : DbContext(options)
    {
        public DbSet<Order> Orders => Set<Order>();

        public DbSet<Reservation> Reservations => Set<Reservation>();
    }

    public sealed class LookupOrderTool : ITool
    {
        public string Name => "lookup_order";

        public string Description => "Finds an order.";

        public ToolSchema InputSchema { get; } = new();

        public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken) => Task.FromResult("shipped");
    }

    public interface ICharts
    {
        Task<byte[]> RenderPngAsync(int quarter, CancellationToken cancellationToken);
    }

    public interface ISales
    {
        Task<bool> HasDataAsync(int quarter, CancellationToken cancellationToken);
    }

    public interface ITokens
    {
        Task<string> GetAsync(CancellationToken cancellationToken);
    }
}
