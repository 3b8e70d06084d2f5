using AgentPg.AspNetCore.Admin.Pages;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;

namespace AgentPg.AspNetCore.Admin;

/// <summary>The admin UI's routes, relative to its prefix. GET renders; POST acts (then redirects back, so every action also
/// works without JavaScript).</summary>
internal static class AdminEndpoints
{
    public static void Map(RouteGroupBuilder group, AgentPgAdminOptions options, string prefix)
    {
        void Get(string pattern, Func<AdminRequest, Task<IResult>> page)
            => group.MapGet(pattern, (Delegate)((HttpContext http) => page(new AdminRequest(http, options, prefix))));

        void Post(string pattern, Func<AdminRequest, Task<IResult>> action)
            => group.MapPost(pattern, (Delegate)((HttpContext http) => action(new AdminRequest(http, options, prefix)))).DisableAntiforgery();

        group.MapGet("/", (HttpContext http) => Results.Redirect(http.Request.PathBase.Add(prefix) + "/dashboard"));
        group.MapGet("/assets/{name}", Assets.Serve);

        Get("/dashboard", DashboardPage.RenderAsync);
        Get("/usage", UsagePage.RenderAsync);
        Get("/runs", RunPages.ListAsync);
        Get("/runs/{id}", RunPages.DetailAsync);
        Get("/runs/{id}/events", RunEventsStream.StreamAsync);
        Get("/sessions", SessionPages.ListAsync);
        Get("/sessions/{id}", SessionPages.DetailAsync);
        Get("/tool-executions", ToolExecutionPages.ListAsync);
        Get("/tool-executions/{id}", ToolExecutionPages.DetailAsync);
        Get("/agents", AgentPages.ListAsync);
        Get("/instances", InstancePages.ListAsync);
        Get("/compaction", CompactionPages.ListAsync);
        Get("/approvals", ApprovalPages.ListAsync);
        Get("/chat", ChatPages.IndexAsync);
        Get("/chat/{id}", ChatPages.SessionAsync);

        Post("/chat/send", ChatPages.SendAsync);
        Post("/runs/{id}/cancel", RunPages.CancelAsync);
        Post("/runs/{id}/regenerate", RunPages.RegenerateAsync);
        Post("/compaction/{id}/restore", CompactionPages.RestoreAsync);
        Post("/sessions/{id}/delete", SessionPages.DeleteAsync);
        Post("/approvals/{id}/approve", ApprovalPages.ApproveAsync);
        Post("/approvals/{id}/reject", ApprovalPages.RejectAsync);
    }
}
