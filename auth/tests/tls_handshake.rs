//! Real rustls handshakes over TCP on 127.0.0.1 between a gateway requiring client
//! certificates and clients with and without a certificate of the mesh CA.

use std::sync::Arc;

use alertmesh_auth::tls::{
    certs_from_pem, client_config, key_from_pem, peer_identity, server_config, CertifiedPem, MeshCa,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const NOW: u64 = 1_750_000_000;

fn identity(
    pem: &CertifiedPem,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    (
        certs_from_pem(pem.cert_pem.as_bytes()).unwrap(),
        key_from_pem(pem.key_pem().as_bytes()).unwrap(),
    )
}

/// Runs one handshake; returns the identity the server saw, or the server's error.
async fn handshake(
    ca: &MeshCa,
    client_cert: Option<&CertifiedPem>,
    server_name: &str,
) -> Result<String, String> {
    let ca_certs = certs_from_pem(ca.pem().cert_pem.as_bytes()).unwrap();
    let (chain, key) = identity(&ca.issue("lasair", NOW).unwrap());
    let server = server_config(chain, key, Some(&ca_certs)).unwrap();
    assert_eq!(server.alpn_protocols, vec![b"h2".to_vec()]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        let peer = conn.peer_certificates().ok_or("no client certificate")?[0].clone();
        let who = peer_identity(&peer).map_err(|e| e.to_string())?;
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(who)
    });

    let client = client_config(&ca_certs, client_cert.map(identity)).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let client_result = async {
        let mut tls = TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await?;
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    }
    .await;
    let server_result = served.await.unwrap();
    match &server_result {
        Ok(_) => assert_eq!(client_result.unwrap(), b"ok"),
        Err(_) => assert!(client_result.is_err(), "the client must notice the refusal"),
    }
    server_result
}

#[tokio::test]
async fn client_with_a_mesh_certificate_is_identified_by_its_san() {
    let ca = MeshCa::generate("dev", NOW).unwrap();
    let fink = ca.issue("fink", NOW).unwrap();
    assert_eq!(handshake(&ca, Some(&fink), "lasair").await.unwrap(), "fink");
    // The dev certificates also name 127.0.0.1 and localhost.
    assert_eq!(
        handshake(&ca, Some(&fink), "127.0.0.1").await.unwrap(),
        "fink"
    );
    assert_eq!(
        handshake(&ca, Some(&fink), "localhost").await.unwrap(),
        "fink"
    );
}

#[tokio::test]
async fn client_without_a_certificate_is_refused() {
    let ca = MeshCa::generate("dev", NOW).unwrap();
    let err = handshake(&ca, None, "lasair").await.unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn client_with_a_certificate_of_another_ca_is_refused() {
    let ca = MeshCa::generate("dev", NOW).unwrap();
    let other = MeshCa::generate("elsewhere", NOW).unwrap();
    let mallory = other.issue("fink", NOW).unwrap();
    let err = handshake(&ca, Some(&mallory), "lasair").await.unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn client_refuses_a_server_name_the_certificate_does_not_hold() {
    let ca = MeshCa::generate("dev", NOW).unwrap();
    let ca_certs = certs_from_pem(ca.pem().cert_pem.as_bytes()).unwrap();
    let (chain, key) = identity(&ca.issue("lasair", NOW).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server_config(chain, key, None).unwrap()));
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.is_ok()
    });
    let client = TlsConnector::from(Arc::new(client_config(&ca_certs, None).unwrap()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("alerce".to_owned()).unwrap();
    assert!(client.connect(name, tcp).await.is_err());
    assert!(!served.await.unwrap());
}
