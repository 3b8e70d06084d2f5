using System.Text.Json;
using AgentPg;
using Microsoft.EntityFrameworkCore;

namespace WebApi;

/// <summary>The application's own data: orders, each checked by an agent run.</summary>
public sealed class ShopDb(DbContextOptions<ShopDb> options) : DbContext(options)
{
    public DbSet<Order> Orders => Set<Order>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Order>(e =>
        {
            e.ToTable("shop_orders");
            e.Property(o => o.Id).HasColumnName("id");
            e.Property(o => o.Item).HasColumnName("item");
            e.Property(o => o.Quantity).HasColumnName("quantity");
            e.Property(o => o.RunId).HasColumnName("run_id");
            e.Property(o => o.Status).HasColumnName("status");
        });
    }

    /// <summary>The sample's table (a real application would use EF Core migrations).</summary>
    public Task CreateTableAsync(CancellationToken cancellationToken) => Database.ExecuteSqlRawAsync("""
        CREATE TABLE IF NOT EXISTS shop_orders (
            id uuid PRIMARY KEY, item text NOT NULL, quantity int NOT NULL, run_id uuid, status text NOT NULL)
        """, cancellationToken);
}

public sealed class Order
{
    public Guid Id { get; set; }

    public string Item { get; set; } = "";

    public int Quantity { get; set; }

    public Guid? RunId { get; set; }

    public string Status { get; set; } = "new";
}

/// <summary>A transactional tool with a scoped DbContext: it marks the run's order as reserved, exactly once, in the same
/// transaction that records its result.</summary>
/// <remarks>The order id comes from the run's variables, set by the application, not from the model: model output is
/// untrusted, and an agent must not be able to reserve someone else's order.</remarks>
public sealed class ReserveStockTool(ShopDb db) : ITransactionalTool
{
    public string Name => "reserve_stock";

    public string Description => "Reserves the stock for the order being checked and marks the order as reserved.";

    public ToolSchema InputSchema { get; } = new();

    public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var orderId = context.GetVariable<Guid>("order_id");
        db.UseToolTransaction(context);
        var order = await db.Orders.SingleOrDefaultAsync(o => o.Id == orderId, cancellationToken);
        if (order is null)
        {
            return $"no order {orderId}";
        }

        order.Status = "reserved";
        await db.SaveChangesAsync(cancellationToken);
        return $"reserved {order.Quantity} x {order.Item}";
    }
}
