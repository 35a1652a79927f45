// GET /docs: the OpenAPI document (/openapi.json) rendered for people by Swagger UI, served from the npm package
// the set-up installs (no CDN). "Authorize" takes the bearer token; it is kept in this tab only.
/* global SwaggerUIBundle */
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#docs",
  deepLinking: true,
  persistAuthorization: false,
  tryItOutEnabled: false,
  validatorUrl: null,
});
