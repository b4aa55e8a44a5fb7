// Build-time configuration of the eomatch catalogue's STAC Browser (STAC Browser 4.0.1 options,
// see its docs/options.md). scripts/build-browser.sh copies this file over STAC Browser's own
// config.js before building.
//
// No host is baked in: by default the browser shows the external (read-only) STAC API of the
// gateway it is served from (`<origin>/external/`). The gateway may also serve a runtime
// `/config.js` (window.STAC_BROWSER_CONFIG, written by eomatch.service.browser) that sets
// catalogUrl to the API's public URL explicitly; runtime values override these.
module.exports = {
    catalogUrl: () => new URL('/external/', window.location.origin).toString(),
    catalogTitle: "eomatch matchup catalogue",
    catalogImage: null,
    // Only our own catalogue: no "enter a catalogue URL" screen, no browsing of other hosts.
    allowExternalAccess: false,
    allowedDomains: [],
    detectLocaleFromBrowser: true,
    storeLocale: true,
    locale: "en",
    fallbackLocale: "en",
    supportedLocales: ["en", "de", "es", "fr", "it"],
    apiCatalogPriority: null,
    useTileLayerAsFallback: false,
    displayGeoTiffByDefault: false,
    displayPreview: true,
    displayOverview: true,
    buildTileUrlTemplate: null,
    getMapSourceOptions: null,
    // Served at the gateway's root; nginx falls back to index.html for deep links.
    pathPrefix: "/",
    historyMode: "history",
    cardViewMode: "cards",
    cardViewSort: "asc",
    showKeywordsInItemCards: false,
    showKeywordsInCatalogCards: false,
    showThumbnailsAsAssets: false,
    searchResultsPerPage: 24,
    itemsPerPage: 24,
    collectionsPerPage: 50,
    maxEntriesPerPage: 1000,
    defaultThumbnailSize: null,
    crossOriginMedia: null,
    requestHeaders: {},
    requestQueryParameters: {},
    // An internal cal/val catalogue: no share-to-social-network buttons.
    socialSharing: [],
    preprocessSTAC: null,
    authConfig: null,
    crs: {},
    footerLinks: null
};
